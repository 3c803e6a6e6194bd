//! Starts the function with the linear memory one request uses, so no request grows it: a fresh
//! instance then needs no `memory.grow` (an `mprotect`, and a TLB shootdown on every core).
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=--initial-memory={}", 4 << 20);
    }
}
