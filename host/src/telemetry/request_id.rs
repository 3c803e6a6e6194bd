//! `x-request-id`: the client's, when it sent a sensible one, else a new one, unique in this
//! process and unlikely to repeat across processes (a random start mixed with a counter).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header.
pub const HEADER: &str = "x-request-id";

/// Longest client-given id kept; a longer one is replaced.
const MAX_LEN: usize = 128;

/// The client's id if it is 1–128 visible ASCII characters, else a fresh one.
pub fn take_or_make(given: Option<&http::HeaderValue>) -> String {
    match given.map(|v| v.as_bytes()) {
        Some(id) if !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(u8::is_ascii_graphic) => {
            String::from_utf8_lossy(id).into_owned()
        }
        _ => make(),
    }
}

/// A fresh id, formatted like a UUID.
pub fn make() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // SAFETY: the buffer is valid for its length.
        let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if got == 8 { u64::from_ne_bytes(bytes) } else { std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15 }
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (a, b) = (mix(seed ^ n), mix(seed.rotate_left(32) ^ n ^ 0xa076_1d64_78bd_642f));
    format!("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xffff, b >> 48, b & 0xffff_ffff_ffff)
}

/// SplitMix64's finaliser: distinct inputs give distinct, well-spread outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sensible_client_id_and_replaces_others() {
        let given = http::HeaderValue::from_static("req-42");
        assert_eq!(take_or_make(Some(&given)), "req-42");
        let spaced = http::HeaderValue::from_static("a b");
        assert_ne!(take_or_make(Some(&spaced)), "a b");
        let long = http::HeaderValue::from_str(&"x".repeat(129)).unwrap();
        assert_eq!(take_or_make(Some(&long)).len(), 36);
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| make()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
