//! One request through one component: admission, the deadline, a fresh instance, the guest's
//! handler, and its response collected. Every way this can fail is an [`InvokeError`], which the
//! HTTP layer turns into a status.

use super::app::App;
use super::component::LoadedComponent;
use super::instance::InstanceState;
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant};
use wasmtime::AsContextMut;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::Prepared;

/// Why a request to a component got no response from it.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// Every slot is taken and the queue is full.
    #[error("component '{component}' is at its limit of {max_concurrent} running and {max_queued} queued requests; retry shortly")]
    QueueFull {
        /// The component.
        component: String,
        /// Its running-request limit.
        max_concurrent: usize,
        /// Its queue limit.
        max_queued: usize,
    },
    /// The guest trapped or failed.
    #[error("component '{component}' {cause}")]
    Guest {
        /// The component.
        component: String,
        /// `trapped: …` or `failed: …`.
        cause: String,
    },
    /// The request's deadline passed first.
    #[error("component '{component}' did not answer within its {} ms deadline", deadline.as_millis())]
    Deadline {
        /// The component.
        component: String,
        /// Its deadline.
        deadline: Duration,
    },
}

impl App {
    /// Runs `request` through `component`: waits for an admission slot, then instantiates it in a
    /// fresh store and runs its handler. The component's deadline counts from now, queue time
    /// included; `wasi:nn` computes still running at the deadline are stopped.
    pub async fn invoke(&self, component: &LoadedComponent, request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, InvokeError> {
        let name = || component.id.to_string();
        let timeout = component.limits.timeout;
        let deadline = Instant::now() + timeout;
        let admitted_and_run = async {
            let Ok(_slot) = component.admission.enter().await else {
                return Err(InvokeError::QueueFull {
                    component: name(),
                    max_concurrent: component.limits.max_concurrent,
                    max_queued: component.limits.max_queued,
                });
            };
            self.run_guest(component, request, deadline).await.map_err(|e| {
                tracing::error!(component = %component.id, "guest failed: {e:?}");
                let cause = match e.chain().find_map(|c| c.downcast_ref::<wasmtime::Trap>()) {
                    Some(trap) => format!("trapped: {trap}"),
                    None => format!("failed: {}", e.root_cause()),
                };
                InvokeError::Guest { component: name(), cause }
            })
        };
        match tokio::time::timeout_at(deadline.into(), admitted_and_run).await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::warn!(component = %component.id, "request exceeded its {timeout:?} deadline");
                Err(InvokeError::Deadline { component: name(), deadline: timeout })
            }
        }
    }

    /// Instantiates the component in a fresh store, runs its handler and collects the response.
    async fn run_guest(
        &self,
        component: &LoadedComponent,
        request: Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<Response<Full<Bytes>>> {
        let pre = self.instance_pre(component).await?;
        let mut store = self.new_store(component, deadline)?;
        let proxy = pre.instantiate_async(&mut store).await.map_err(anyhow::Error::from).context("instantiating")?;
        let request = request.map(|body| body.map_err(|never| match never {}).boxed_unsync());
        let (tx, rx) = futures::channel::oneshot::channel();
        let prepared = Prepared::new(store.as_context_mut(), &proxy, request, InstanceState::http, tx)?;
        let response = store
            .run_concurrent(async |accessor| -> Result<Response<Full<Bytes>>> {
                let (ran, response) = futures::join!(prepared.run(accessor, std::future::pending::<()>()), async {
                    let response = rx.await.context("the guest returned no response")??;
                    let (parts, body) = response.into_parts();
                    let body = body.collect().await.map_err(|e| anyhow::anyhow!("reading the guest's response body: {e:?}"))?;
                    anyhow::Ok(Response::from_parts(parts, Full::new(body.to_bytes())))
                });
                ran?;
                response
            })
            .await??;
        Ok(response)
    }
}
