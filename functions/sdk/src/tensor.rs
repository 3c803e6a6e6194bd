use crate::bindings::{NnTensor, TensorType};
use crate::error::{Error, ErrorKind};

/// Element types a [`Tensor`] can hold: `wasi:nn`'s, as Spindle's tensor rules define them.
/// Displayed with `wasi:nn`'s names (`fp32`, `u8`, …).
pub use spindle_tensor::ElementType;

/// A dense row-major tensor owned by the guest.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<u32>,
    ty: ElementType,
    data: Vec<u8>,
}

macro_rules! typed {
    ($from:ident, $to:ident, $t:ty, $ty:ident) => {
        /// Builds a tensor from values and a shape whose product must equal `values.len()`.
        pub fn $from(shape: &[usize], values: &[$t]) -> Result<Self, Error> {
            Self::check_len(shape, values.len())?;
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok(Self { shape: shape.iter().map(|&d| d as u32).collect(), ty: ElementType::$ty, data })
        }

        /// The values, if the tensor holds this element type.
        pub fn $to(&self) -> Result<Vec<$t>, Error> {
            self.expect(ElementType::$ty)?;
            const N: usize = std::mem::size_of::<$t>();
            Ok(self.data.chunks_exact(N).map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk of N bytes"))).collect())
        }
    };
}

impl Tensor {
    typed!(from_f32, to_f32, f32, F32);
    typed!(from_f64, to_f64, f64, F64);
    typed!(from_u8, to_u8, u8, U8);
    typed!(from_i32, to_i32, i32, I32);
    typed!(from_i64, to_i64, i64, I64);

    /// Builds a tensor from raw little-endian bytes, unchecked: the host validates that
    /// `product(shape) × element size == data.len()` and names the tensor if not.
    pub fn from_bytes(shape: &[u32], ty: ElementType, data: Vec<u8>) -> Self {
        Self { shape: shape.to_vec(), ty, data }
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The shape.
    pub fn shape(&self) -> &[u32] {
        &self.shape
    }

    /// The element type.
    pub fn element_type(&self) -> ElementType {
        self.ty
    }

    fn check_len(shape: &[usize], len: usize) -> Result<(), Error> {
        let expected = spindle_tensor::element_count(shape.iter().map(|&d| d as u64));
        if expected == Some(len as u64) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("shape {shape:?} needs {} values, got {len}", expected.map_or("too many".into(), |n| n.to_string())),
        ))
    }

    fn expect(&self, ty: ElementType) -> Result<(), Error> {
        if self.ty == ty {
            return Ok(());
        }
        Err(Error::new(ErrorKind::Compute, format!("tensor of shape {:?} holds {}, not {ty}", self.shape, self.ty)))
    }

    pub(crate) fn to_nn(&self) -> NnTensor {
        let ty = match self.ty {
            ElementType::F32 => TensorType::Fp32,
            ElementType::F64 => TensorType::Fp64,
            ElementType::U8 => TensorType::U8,
            ElementType::I32 => TensorType::I32,
            ElementType::I64 => TensorType::I64,
            ElementType::F16 => TensorType::Fp16,
            ElementType::Bf16 => TensorType::Bf16,
        };
        NnTensor::new(&self.shape, ty, &self.data)
    }

    pub(crate) fn from_nn(t: &NnTensor) -> Result<Self, Error> {
        let ty = match t.ty() {
            TensorType::Fp32 => ElementType::F32,
            TensorType::Fp64 => ElementType::F64,
            TensorType::U8 => ElementType::U8,
            TensorType::I32 => ElementType::I32,
            TensorType::I64 => ElementType::I64,
            TensorType::Fp16 => ElementType::F16,
            TensorType::Bf16 => ElementType::Bf16,
        };
        Ok(Self { shape: t.dimensions(), ty, data: t.data() })
    }
}
