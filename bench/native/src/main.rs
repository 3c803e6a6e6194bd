//! Benchmark floor: one ONNX model served over the Open Inference Protocol (HTTP) by onnxruntime
//! called in-process, behind hyper, without WebAssembly. Not a product: `scripts/bench-compare`
//! runs it beside Spindle and the Python servers.
//!
//!     cargo build --release -p native-oip
//!     target/release/native-oip --model models/cifar10/model.onnx --name cifar10 \
//!         --onnxruntime .venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0
//!
//! Like Spindle's default, it runs one single-threaded session per core, each request on
//! whichever is free, so engine jobs never outnumber the cores.

mod protocol;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use hyper_util::rt::TokioIo;
use ort::session::{Session, builder::GraphOptimizationLevel};
use ort::value::{Outlet, Tensor, TensorElementType, ValueType};
use protocol::{HEADER_LENGTH, InferRequest, ModelInfo, TensorInfo};
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Args {
    /// The ONNX model: one FP32 input and one FP32 output, the first dimension the batch.
    #[arg(long)]
    model: PathBuf,
    /// Its name in `/v2/models/{name}`.
    #[arg(long, default_value = "cifar10")]
    name: String,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The ONNX Runtime shared library.
    #[arg(long)]
    onnxruntime: PathBuf,
    /// Largest batch a request may carry.
    #[arg(long, default_value_t = 32)]
    max_batch_size: i64,
}

/// The model and the sessions that run it: one permit per idle session.
struct Server {
    info: ModelInfo,
    idle: Mutex<Vec<Session>>,
    permits: Arc<Semaphore>,
}

impl Server {
    async fn infer(self: &Arc<Self>, request: &InferRequest) -> Result<(Vec<i64>, Vec<f32>), String> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let input = Tensor::from_array((request.shape.clone(), request.data.clone())).map_err(|e| e.to_string())?;
        let server = self.clone();
        // The blocking job owns the permit and puts the session back itself, so a client that
        // goes away mid-request loses neither.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut session = server.idle.lock().unwrap_or_else(|e| e.into_inner()).pop().expect("a permit stands for an idle session");
            let result = server.run(&mut session, input);
            server.idle.lock().unwrap_or_else(|e| e.into_inner()).push(session);
            result
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn run(&self, session: &mut Session, input: Tensor<f32>) -> Result<(Vec<i64>, Vec<f32>), String> {
        let outputs = session.run(ort::inputs![self.info.input.name.as_str() => input]).map_err(|e| e.to_string())?;
        let (shape, data) = outputs[self.info.output.name.as_str()].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        Ok((shape.to_vec(), data.to_vec()))
    }

    async fn handle(self: &Arc<Self>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let model_path = format!("/v2/models/{}", self.info.name);
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        let header_length = request.headers().get(HEADER_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let body = request.into_body().collect().await?.to_bytes();
        Ok(match (method, path.strip_prefix(&model_path)) {
            (Method::GET, _) if path == "/v2" => json_response(
                StatusCode::OK,
                json!({"name": "native-oip", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}),
            ),
            (Method::GET, _) if path == "/v2/health/live" || path == "/v2/health/ready" => {
                json_response(StatusCode::OK, json!({"live": true, "ready": true}))
            }
            (Method::GET, Some("" | "/versions/1")) => json_response(StatusCode::OK, self.info.metadata()),
            (Method::GET, Some("/ready")) => json_response(StatusCode::OK, json!({"name": self.info.name, "ready": true})),
            (Method::GET, Some("/config" | "/versions/1/config")) => json_response(StatusCode::OK, self.info.config()),
            (Method::POST, Some("/infer" | "/versions/1/infer")) => {
                let request = match self.info.parse_infer(header_length, &body) {
                    Ok(request) => request,
                    Err(e) => return Ok(json_response(StatusCode::BAD_REQUEST, json!({"error": e}))),
                };
                match self.infer(&request).await {
                    Ok((shape, output)) => {
                        let (body, length) = self.info.encode_infer(&request, &shape, &output);
                        let response = match length {
                            Some(length) => {
                                Response::builder().header("content-type", "application/octet-stream").header(HEADER_LENGTH, length)
                            }
                            None => Response::builder().header("content-type", "application/json"),
                        };
                        response.body(Full::new(Bytes::from(body))).expect("static headers are valid")
                    }
                    Err(e) => json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e})),
                }
            }
            _ => json_response(StatusCode::NOT_FOUND, json!({"error": format!("no endpoint {path}")})),
        })
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static headers are valid")
}

/// The name and declared shape of a session's only FP32 input or output.
fn only_tensor(outlets: &[Outlet], role: &str) -> anyhow::Result<TensorInfo> {
    let [outlet] = outlets else { bail!("expected the model to have 1 {role}, it has {}", outlets.len()) };
    match outlet.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => {
            Ok(TensorInfo { name: outlet.name().to_owned(), shape: shape.iter().map(|&d| d.max(-1)).collect() })
        }
        other => bail!("expected {role} '{}' to be an FP32 tensor, it is {other:?}", outlet.name()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let environment = ort::init_from(&args.onnxruntime)
        .with_context(|| format!("loading {}", args.onnxruntime.display()))?
        .with_name("native-oip")
        .build()?;
    let model = std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sessions = (0..cores)
        .map(|_| {
            Session::builder(&environment)?
                .with_optimization_level(GraphOptimizationLevel::Level3)?
                .with_intra_threads(1)?
                .with_inter_threads(1)?
                .commit_from_memory(&model)
        })
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("loading {}", args.model.display()))?;
    let info = ModelInfo {
        name: args.name,
        input: only_tensor(sessions[0].inputs(), "input")?,
        output: only_tensor(sessions[0].outputs(), "output")?,
        max_batch_size: args.max_batch_size,
    };
    let server = Arc::new(Server { info, idle: Mutex::new(sessions), permits: Arc::new(Semaphore::new(cores)) });
    let listener = tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    println!("Serving http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let server = server.clone();
                async move { server.handle(request).await }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
