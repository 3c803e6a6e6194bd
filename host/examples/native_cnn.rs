//! Benchmark baseline: the cifar10 CNN served natively — the same tract backend Spindle uses,
//! called in-process, behind a minimal hyper server, with the same preprocessing and answer
//! as `functions/cifar10`. Not a product: `scripts/bench-runtime` compares Spindle against it.
//!
//!     cargo run --release --example native_cnn -- models/cifar10 127.0.0.1:0

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use image::imageops::FilterType;
use spindle::nn::backend::{self, Backend, ElementType, Graph, Tensor, tract::TractBackend};
use std::sync::Arc;

struct Model {
    graph: Arc<dyn Graph>,
    labels: Vec<String>,
}

fn classify(model: &Model, body: &[u8]) -> Result<String, String> {
    let rgb = image::load_from_memory(body).map_err(|e| e.to_string())?.to_rgb8();
    let rgb = if rgb.dimensions() == (32, 32) { rgb } else { image::imageops::resize(&rgb, 32, 32, FilterType::Triangle) };
    let data = rgb.as_raw().iter().flat_map(|&v| (f32::from(v) / 255.0).to_le_bytes()).collect();
    let input = Tensor { dims: vec![1, 32, 32, 3], ty: ElementType::F32, data };
    let outputs = backend::compute(model.graph.as_ref(), vec![("input".into(), input)], &backend::RunControl::default())
        .map_err(|e| e.to_string())?;
    let probs: Vec<f32> = outputs[0].1.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let mut ranked: Vec<(usize, f32)> = probs.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<String> =
        ranked.iter().take(5).map(|(i, p)| format!("{{\"label\":\"{}\",\"probability\":{p}}}", model.labels[*i])).collect();
    Ok(format!("[{}]", top.join(",")))
}

async fn handle(model: Arc<Model>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    let (status, text) = match classify(&model, &body) {
        Ok(json) => (200, json),
        Err(e) => (400, format!("{{\"error\":{e:?}}}")),
    };
    Ok(Response::builder().status(status).header("content-type", "application/json").body(Full::new(Bytes::from(text))).unwrap())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "models/cifar10".into()));
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let graph = TractBackend::cpu(1).load(&std::fs::read(dir.join("model.onnx"))?)?;
    let labels = std::fs::read_to_string(dir.join("labels.txt"))?.lines().map(str::to_owned).collect();
    let model = Arc::new(Model { graph, labels });
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("Serving http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let model = model.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(model.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
