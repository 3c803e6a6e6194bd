//! Per-request instance state: one [`InstanceState`] per `Store`, reached through small views,
//! one per capability (WASI, `wasi:http`, `wasi:nn`).

use super::limits::InstanceLimiter;
use super::outbound::OutboundPolicy;
use crate::nn::{NnCtx, NnView};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Everything one instance owns for the life of one request.
pub struct InstanceState {
    pub(super) table: ResourceTable,
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) outbound: OutboundPolicy,
    pub(super) nn: NnCtx,
    pub(super) limits: InstanceLimiter,
    pub(super) variables: super::variables::Values,
}

impl InstanceState {
    /// The `wasi:nn` view: the component's models and the shared graph cache.
    pub fn nn(&mut self) -> NnView<'_> {
        NnView { ctx: &mut self.nn, table: &mut self.table }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}
