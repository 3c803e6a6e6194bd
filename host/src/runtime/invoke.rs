//! One request through one component: admission, then its body (read only once admitted, so
//! waiting clients hold no body memory), the deadline, a fresh instance, the guest's handler, and
//! its response collected within its limit. Every way this can fail is an [`InvokeError`], which
//! the HTTP layer turns into a status.

use super::app::App;
use super::component::LoadedComponent;
use super::instance::InstanceState;
use crate::nn::batch::SubmitError;
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
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
    /// A model's batch queue is full (the guest's compute was not run).
    #[error("component '{component}': {reason}")]
    ModelBusy {
        /// The component.
        component: String,
        /// Which model, and its queue bound.
        reason: String,
    },
    /// The guest trapped or failed.
    #[error("component '{component}' {cause}")]
    Guest {
        /// The component.
        component: String,
        /// `trapped: …` or `failed: …`.
        cause: String,
    },
    /// The request body is larger than the component accepts.
    #[error("request body exceeds the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The request body did not arrive in time.
    #[error("the request body did not arrive within {} ms", after.as_millis())]
    BodyTimeout {
        /// How long it was given.
        after: Duration,
    },
    /// The request body could not be read.
    #[error("could not read the request body: {0}")]
    BodyUnreadable(String),
    /// The request's deadline passed first.
    #[error("component '{component}' did not answer within its {} ms deadline", deadline.as_millis())]
    Deadline {
        /// The component.
        component: String,
        /// Its deadline.
        deadline: Duration,
    },
}

/// The named models a request's instance loaded, on its response's extensions.
#[derive(Clone, Debug, Default)]
pub struct LoadedModels(pub Vec<String>);

/// The request body's length in bytes, on its response's extensions.
#[derive(Clone, Copy, Debug)]
pub struct BodyBytes(pub u64);

impl InvokeError {
    /// Why, in one word, for metrics.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::QueueFull { .. } => "queue_full",
            Self::ModelBusy { .. } => "model_busy",
            Self::Guest { cause, .. } if cause.starts_with("trapped") => "trap",
            Self::Guest { .. } => "guest_error",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::BodyUnreadable(_) => "body_unreadable",
            Self::Deadline { .. } => "deadline",
        }
    }
}

impl App {
    /// Runs `request` through `component`: waits for an admission slot, then instantiates it in a
    /// fresh store and runs its handler. The component's deadline counts from now, queue time
    /// included; `wasi:nn` computes still running at the deadline are stopped.
    pub async fn invoke<B>(&self, component: &LoadedComponent, request: Request<B>) -> Result<Response<Full<Bytes>>, InvokeError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let name = || component.id.to_string();
        let timeout = component.limits.timeout;
        let deadline = Instant::now() + timeout;
        let admitted_and_run = async {
            let arrived = Instant::now();
            let Ok(_slot) = component.admission.enter().await else {
                return Err(InvokeError::QueueFull {
                    component: name(),
                    max_concurrent: component.limits.max_concurrent,
                    max_queued: component.limits.max_queued,
                });
            };
            component.metrics.admitted(arrived.elapsed());
            let request = read_body(component, request).await?;
            let body_bytes = BodyBytes(request.body().size_hint().exact().unwrap_or(0));
            let mut response = self.run_guest(component, request, deadline).await.map_err(|e| {
                if let Some(full) = e.chain().find_map(|c| c.downcast_ref::<SubmitError>()) {
                    return InvokeError::ModelBusy { component: name(), reason: full.to_string() };
                }
                tracing::error!(component = %component.id, "guest failed: {e:?}");
                let cause = match e.chain().find_map(|c| c.downcast_ref::<wasmtime::Trap>()) {
                    Some(trap) => format!("trapped: {trap}"),
                    None => format!("failed: {}", e.root_cause()),
                };
                InvokeError::Guest { component: name(), cause }
            })?;
            response.extensions_mut().insert(body_bytes);
            Ok(response)
        };
        match tokio::time::timeout_at(deadline.into(), admitted_and_run).await {
            // An answer made at the deadline (say, to a compute stopped there) is still late.
            Ok(answer) if Instant::now() < deadline => answer,
            Ok(_) | Err(_) => {
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
        component.metrics.instance_created();
        let proxy = pre.instantiate_async(&mut store).await.map_err(anyhow::Error::from).context("instantiating")?;
        let request = request.map(|body| body.map_err(|never| match never {}).boxed_unsync());
        let (tx, rx) = futures::channel::oneshot::channel();
        let prepared = Prepared::new(store.as_context_mut(), &proxy, request, InstanceState::http, tx)?;
        // The response body is collected *outside* `run_concurrent`. A WASIp2 guest blocks in
        // `async` host calls (`blocking-write-and-flush`, `pollable.block`, ...) that keep
        // exclusive hold of the store; while one is pending, the event loop does not poll the
        // closure passed to `run_concurrent`, so a collector inside it never drains the body's
        // two-chunk channel and the guest's write waits for it forever. Out here the collector
        // is polled whenever the store's future is pending (as in `wasmtime serve`, where hyper
        // reads the body on another task). The event loop is kept running until the body is
        // collected, since it is what pumps a WASIp3 guest's body stream.
        let (collected_tx, collected_rx) = futures::channel::oneshot::channel::<()>();
        let run = async {
            store
                .run_concurrent(async |accessor| -> Result<()> {
                    prepared.run(accessor, std::future::pending::<()>()).await?;
                    _ = collected_rx.await;
                    Ok(())
                })
                .await??;
            anyhow::Ok(())
        };
        let collect = async {
            let _collected = collected_tx;
            let response = rx.await.context("the guest returned no response")??;
            let (parts, body) = response.into_parts();
            let limit = component.limits.max_response_bytes;
            let body = Limited::new(body, limit).collect().await.map_err(|e| match e.downcast::<LengthLimitError>() {
                Ok(_) => anyhow::anyhow!("its response body exceeds the {limit}-byte limit"),
                Err(e) => anyhow::anyhow!("reading the guest's response body: {e:?}"),
            })?;
            anyhow::Ok(Response::from_parts(parts, Full::new(body.to_bytes())))
        };
        // Either failing ends both: a guest that traps mid-body leaves its body's sender in the
        // store, so waiting for the body then would wait for the deadline.
        let ((), response) = futures::try_join!(run, collect)?;
        let mut response = response;
        response.extensions_mut().insert(LoadedModels(store.data().nn.loaded_models().to_vec()));
        Ok(response)
    }
}

/// Reads the whole request body within the component's size and time limits.
async fn read_body<B>(component: &LoadedComponent, request: Request<B>) -> Result<Request<Full<Bytes>>, InvokeError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (limit, after) = (component.limits.max_body_bytes, component.limits.body_timeout);
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(after, Limited::new(body, limit).collect()).await {
        Err(_) => return Err(InvokeError::BodyTimeout { after }),
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(InvokeError::BodyTooLarge { limit }),
        Ok(Err(e)) => {
            // hyper says only "error reading a body from connection"; what was wrong is in its sources.
            let chain = std::iter::successors(Some(&*e as &dyn std::error::Error), |e| e.source());
            return Err(InvokeError::BodyUnreadable(chain.map(|e| e.to_string()).collect::<Vec<_>>().join(": ")));
        }
    };
    Ok(Request::from_parts(parts, Full::new(body)))
}
