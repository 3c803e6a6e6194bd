//! The clock that makes running guests yield: wasmtime's epoch, advanced by a host thread.

use std::time::Duration;
use wasmtime::Engine;

/// How often the engine's epoch advances, and so how often running guest code yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Advances `engine`'s epoch every [`EPOCH_TICK`] until the engine is dropped.
///
/// An OS thread, not a task: guests that never yield must not be able to stop the clock.
pub fn start_ticking(wasm_engine: &Engine) -> std::io::Result<()> {
    let wasm_engine = wasm_engine.weak();
    std::thread::Builder::new().name("spindle-epoch".into()).spawn(move || {
        while let Some(wasm_engine) = wasm_engine.upgrade() {
            wasm_engine.increment_epoch();
            drop(wasm_engine);
            std::thread::sleep(EPOCH_TICK);
        }
    })?;
    Ok(())
}
