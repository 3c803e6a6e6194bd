//! A tensor's rules, written once.
//!
//! The host checks every tensor a guest hands `wasi:nn` before an engine sees it; the SDK checks
//! the tensors a function builds and the ones a client sends over the Open Inference Protocol;
//! the wasm `wasi:nn` provider checks them again on hosts without `wasi:nn`. All three use this
//! crate, so they agree on element sizes, limits and messages:
//!
//! ```
//! use spindle_tensor::{ElementType, check};
//! assert_eq!(check("input", &[1, 32, 32, 3], ElementType::F32, 12288), Ok(()));
//! let err = check("input", &[1, 32, 32, 3], ElementType::F32, 12).unwrap_err();
//! assert_eq!(err.to_string(), "tensor 'input': dimensions [1, 32, 32, 3] of fp32 need 12288 bytes, got 12");
//! ```
//!
//! It depends on nothing and builds for the host and for `wasm32-wasip2` alike.
#![deny(missing_docs)]

pub mod named;

use std::fmt;

/// Tensors larger than this are refused wherever Spindle meets them.
pub const MAX_TENSOR_BYTES: usize = 256 << 20;
/// Tensors of higher rank are refused wherever Spindle meets them.
pub const MAX_TENSOR_RANK: usize = 8;

/// Element types a tensor can hold: those of `wasi:nn`'s `tensor-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// 16-bit float.
    F16,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// bfloat16.
    Bf16,
    /// Unsigned byte.
    U8,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
}

impl ElementType {
    /// Size in bytes of one element.
    pub const fn size(self) -> usize {
        match self {
            ElementType::U8 => 1,
            ElementType::F16 | ElementType::Bf16 => 2,
            ElementType::F32 | ElementType::I32 => 4,
            ElementType::F64 | ElementType::I64 => 8,
        }
    }

    /// `wasi:nn`'s name for it: `fp32`, `u8`, …
    pub const fn name(self) -> &'static str {
        match self {
            ElementType::F16 => "fp16",
            ElementType::F32 => "fp32",
            ElementType::F64 => "fp64",
            ElementType::Bf16 => "bf16",
            ElementType::U8 => "u8",
            ElementType::I32 => "i32",
            ElementType::I64 => "i64",
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The number of elements `dims` describe, or `None` if counting them overflows.
pub fn element_count(dims: impl IntoIterator<Item = u64>) -> Option<u64> {
    dims.into_iter().try_fold(1u64, |count, d| count.checked_mul(d))
}

/// The bytes a tensor of `dims` and `ty` takes, or `None` when the product of its non-zero
/// dimensions and the element size exceeds [`MAX_TENSOR_BYTES`]. A zero dimension makes the
/// tensor empty but does not excuse the others: engines still work out strides from them.
pub fn byte_len(dims: impl IntoIterator<Item = u64>, ty: ElementType) -> Option<usize> {
    let mut empty = false;
    let extent = dims
        .into_iter()
        .filter(|&d| {
            empty |= d == 0;
            d != 0
        })
        .try_fold(ty.size() as u64, |n, d| n.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_BYTES as u64)?;
    Some(if empty { 0 } else { extent as usize })
}

/// Checks a tensor called `name`: rank at most [`MAX_TENSOR_RANK`], size at most
/// [`MAX_TENSOR_BYTES`], and exactly `product(dims) × ty.size()` bytes of data.
pub fn check(name: &str, dims: &[u32], ty: ElementType, data_len: usize) -> Result<(), TensorError> {
    let dims_u64 = || dims.iter().map(|&d| u64::from(d));
    if dims.len() > MAX_TENSOR_RANK {
        return Err(TensorError { name: name.to_owned(), kind: TensorErrorKind::RankTooHigh { rank: dims.len() } });
    }
    let expected = byte_len(dims_u64(), ty)
        .ok_or_else(|| TensorError { name: name.to_owned(), kind: TensorErrorKind::TooLarge { dims: dims.to_vec() } })?;
    if expected != data_len {
        let kind = TensorErrorKind::LengthMismatch { dims: dims.to_vec(), ty, expected, got: data_len };
        return Err(TensorError { name: name.to_owned(), kind });
    }
    Ok(())
}

/// A tensor that breaks one of the rules, and which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorError {
    /// The tensor's name, as the caller gave it.
    pub name: String,
    /// The rule it breaks.
    pub kind: TensorErrorKind,
}

/// The rule a tensor breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TensorErrorKind {
    /// More than [`MAX_TENSOR_RANK`] dimensions.
    RankTooHigh {
        /// Its rank.
        rank: usize,
    },
    /// More than [`MAX_TENSOR_BYTES`] bytes, counting only its non-zero dimensions.
    TooLarge {
        /// Its dimensions.
        dims: Vec<u32>,
    },
    /// Data of another length than its dimensions and element type need.
    LengthMismatch {
        /// Its dimensions.
        dims: Vec<u32>,
        /// Its element type.
        ty: ElementType,
        /// The bytes they need.
        expected: usize,
        /// The bytes it has.
        got: usize,
    },
}

impl TensorError {
    /// Whether the tensor is refused for its size (a `too-large` error in `wasi:nn`) rather than
    /// for being malformed (`invalid-argument`).
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, TensorErrorKind::TooLarge { .. })
    }
}

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match &self.kind {
            TensorErrorKind::RankTooHigh { rank } => {
                write!(f, "tensor '{name}' has rank {rank}, at most {MAX_TENSOR_RANK} is allowed")
            }
            TensorErrorKind::TooLarge { dims } => {
                write!(f, "tensor '{name}' with dimensions {dims:?} exceeds {MAX_TENSOR_BYTES} bytes")
            }
            TensorErrorKind::LengthMismatch { dims, ty, expected, got } => {
                write!(f, "tensor '{name}': dimensions {dims:?} of {ty} need {expected} bytes, got {got}")
            }
        }
    }
}

impl std::error::Error for TensorError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(ElementType::U8.size(), 1);
        assert_eq!(ElementType::Bf16.size(), 2);
        assert_eq!(ElementType::I64.size(), 8);
        assert_eq!(ElementType::F16.to_string(), "fp16");
    }

    #[test]
    fn byte_lengths_are_checked_products_under_the_limit() {
        assert_eq!(byte_len([2, 3], ElementType::F32), Some(24));
        assert_eq!(byte_len([], ElementType::I64), Some(8));
        assert_eq!(byte_len([0, 7], ElementType::F32), Some(0));
        // Found by fuzzing: a zero dimension used to excuse the ones after it but not those before.
        assert_eq!(byte_len([0, u32::MAX.into(), u32::MAX.into()], ElementType::F32), None);
        assert_eq!(byte_len([u32::MAX.into(), u32::MAX.into(), 0], ElementType::F32), None);
        assert_eq!(byte_len([0, 1 << 20, 64], ElementType::F32), Some(0));
        assert_eq!(byte_len([u64::MAX, 2], ElementType::U8), None);
        assert_eq!(byte_len([MAX_TENSOR_BYTES as u64], ElementType::U8), Some(MAX_TENSOR_BYTES));
        assert_eq!(byte_len([MAX_TENSOR_BYTES as u64 + 1], ElementType::U8), None);
        assert_eq!(byte_len([MAX_TENSOR_BYTES as u64 / 4 + 1], ElementType::F32), None);
    }

    #[test]
    fn check_names_the_tensor_and_the_rule() {
        let err = check("x", &[1; 9], ElementType::U8, 1).unwrap_err();
        assert_eq!(err.to_string(), "tensor 'x' has rank 9, at most 8 is allowed");
        let err = check("x", &[u32::MAX, u32::MAX], ElementType::F32, 0).unwrap_err();
        assert!(err.is_too_large());
        assert_eq!(err.to_string(), format!("tensor 'x' with dimensions [4294967295, 4294967295] exceeds {MAX_TENSOR_BYTES} bytes"));
        let err = check("x", &[2, 2], ElementType::I32, 15).unwrap_err();
        assert!(!err.is_too_large());
        assert_eq!(err.to_string(), "tensor 'x': dimensions [2, 2] of i32 need 16 bytes, got 15");
    }
}
