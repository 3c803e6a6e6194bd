//! The CIFAR-10 CNN behind HTTP.
//!
//! Paths are relative to the component's route (Spin's `spin-path-info`), so with the route
//! `/models/cifar10/...`:
//!
//! - `POST /models/cifar10/classify[?top_k=N]` with a PNG or JPEG (raw body, or a multipart
//!   form field `image`) or a JSON tensor `{"data": [...], "shape": [1, 32, 32, 3]}` of floats
//!   in [0, 1]; answers the top-k labels with probabilities, best first.
//! - `GET /models/cifar10` describes the model.
//!
//! - the Open Inference Protocol (KServe v2) under `/v2/models/cifar10/...`, from the model's
//!   declared description `models/cifar10/model.json` (see `spindle_sdk::oip`).
//!
//! Every bad request gets a 4xx with `{"error": "..."}` saying what was wrong.

mod input;

use input::{InputError, MODEL_SHAPE};
use spin_sdk::http::{IntoResponse, Method, Request, Response, StatusCode, body::IncomingBodyExt};
use spindle_sdk::oip::Body;
use spindle_sdk::{ErrorKind, Model, Tensor};

const MODEL: &str = "cifar10";
const INPUT: &str = "input";
const OUTPUT: &str = "probabilities";
/// The label of each output, in order. Compiled in: the labels are part of this function's API,
/// and a per-request file read would cost more than the rest of the answer's formatting.
const LABELS: &str = include_str!("../../../models/cifar10/labels.txt");
const DEFAULT_TOP_K: usize = 5;
/// The model's declared description, written by its pipeline (`models/describe.py`).
const MODEL_CONFIG: &str = include_str!("../../../models/cifar10/model.json");

/// One answer: a label and its probability.
#[derive(serde::Serialize)]
pub struct Prediction {
    pub label: String,
    pub probability: f32,
}

#[spin_sdk::http_service]
async fn handle(req: Request) -> impl IntoResponse {
    if req.uri().path().starts_with("/v2/models/") {
        return open_inference_protocol(req).await;
    }
    friendly(req).await.map(Body::from)
}

async fn open_inference_protocol(req: Request) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = match req.into_body().bytes().await {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")).map(Body::from),
    };
    let name = path.strip_prefix("/v2/models/").and_then(|rest| rest.split('/').next()).unwrap_or(MODEL);
    let models = match model_config(name) {
        Ok(config) => [config],
        Err((status, message)) => return error(status, message).map(Body::from),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    spindle_sdk::oip::serve(&method, &path, header, &body, &models)
        .unwrap_or_else(|| error(StatusCode::NOT_FOUND, format!("no such endpoint {path}")).map(Body::from))
}

/// The declared description of the model `name`: compiled in for `cifar10`; for another CNN
/// this function is given (`cifar10-int8`), its `model.json`, mounted beside its `model.onnx`.
fn model_config(name: &str) -> Result<spindle_sdk::oip::ModelConfig, (StatusCode, String)> {
    let text = match name {
        MODEL => MODEL_CONFIG.to_owned(),
        _ => std::fs::read_to_string(format!("/models/{name}/model.json"))
            .map_err(|_| (StatusCode::NOT_FOUND, format!("unknown model '{name}': nothing is mounted at /models/{name}/model.json")))?,
    };
    spindle_sdk::oip::ModelConfig::from_json(&text).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// The model a friendly request is for: the last segment of its component's route (Spin's
/// `spin-component-route`, `/models/cifar10-int8`; on hosts that do not send it, the segment
/// after `/models/`) when a model of that name is mounted, else `cifar10`; so the same code
/// serves each CNN it is routed to.
fn model_name(req: &Request) -> String {
    let route = req.headers().get("spin-component-route").and_then(|v| v.to_str().ok());
    let name = match route {
        Some(route) => route.rsplit('/').next(),
        None => req.uri().path().strip_prefix("/models/").and_then(|rest| rest.split('/').next()),
    };
    let mounted = |name: &&str| !name.is_empty() && std::path::Path::new(&format!("/models/{name}/model.onnx")).exists();
    name.filter(mounted).unwrap_or(MODEL).to_owned()
}

async fn friendly(req: Request) -> Response<String> {
    let model = model_name(&req);
    let path = path_info(&req, &model);
    let req_path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    match (path.as_str(), method) {
        ("/classify", Method::POST) => {
            let body = match req.into_body().bytes().await {
                Ok(body) => body,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")),
            };
            classify(&model, &content_type, &query, &body)
        }
        ("/classify", _) => {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "use POST with an image or a JSON tensor");
            response.headers_mut().insert("allow", "POST".parse().expect("static header"));
            response
        }
        ("", Method::GET) => describe(&model),
        ("", _) => {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            response.headers_mut().insert("allow", "GET".parse().expect("static header"));
            response
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint {}; try POST .../classify", req_path)),
    }
}

/// The path below the component's route: Spin's `spin-path-info` header; on hosts that do not
/// send it (`wasmtime serve`), the path below `/models/{model}`.
fn path_info(req: &Request, model: &str) -> String {
    let path = match req.headers().get("spin-path-info").and_then(|v| v.to_str().ok()) {
        Some(info) => info.to_owned(),
        None => {
            let full = req.uri().path();
            full.strip_prefix(&format!("/models/{model}")).unwrap_or(full).to_owned()
        }
    };
    path.trim_end_matches('/').to_owned()
}

fn classify(model: &str, content_type: &str, query: &str, body: &[u8]) -> Response<String> {
    let top_k = match parse_top_k(query) {
        Ok(k) => k,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let pixels = match input::from_request(content_type, body) {
        Ok(pixels) => pixels,
        Err(InputError::Unsupported(message)) => return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
        Err(InputError::Bad(message)) => return error(StatusCode::BAD_REQUEST, message),
    };
    match predict(model, &pixels, top_k) {
        Ok(predictions) => json(StatusCode::OK, serde_json::to_string(&predictions).unwrap_or_default()),
        Err(e) if e.kind() == ErrorKind::InvalidInput => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Runs the CNN `model` on one preprocessed image (`[32, 32, 3]` floats) and returns the top `k`
/// labels.
pub fn predict(model: &str, pixels: &[f32], k: usize) -> Result<Vec<Prediction>, spindle_sdk::Error> {
    let model = Model::open(model)?;
    let input = Tensor::from_f32(&MODEL_SHAPE, pixels)?;
    let outputs = model.run(&[(INPUT, input)])?;
    let probabilities = outputs.get(OUTPUT)?.to_f32()?;
    let labels = labels();
    let mut ranked: Vec<(usize, f32)> = probabilities.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(ranked
        .into_iter()
        .take(k)
        .map(|(i, probability)| Prediction { label: labels.get(i).map_or_else(|| i.to_string(), |l| (*l).to_owned()), probability })
        .collect())
}

fn labels() -> Vec<&'static str> {
    LABELS.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

fn describe(model: &str) -> Response<String> {
    let body = serde_json::json!({
        "name": model,
        "input": { "name": INPUT, "datatype": "FP32", "shape": MODEL_SHAPE, "layout": "NHWC, RGB, pixel / 255" },
        "output": { "name": OUTPUT, "datatype": "FP32", "shape": [1, labels().len()] },
        "labels": labels(),
        "endpoints": [format!("POST /models/{model}/classify[?top_k=N]")],
    });
    json(StatusCode::OK, body.to_string())
}

fn parse_top_k(query: &str) -> Result<usize, String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "top_k" {
            return match value.parse::<usize>() {
                Ok(k) if (1..=10).contains(&k) => Ok(k),
                _ => Err(format!("top_k must be a whole number from 1 to 10, got '{value}'")),
            };
        }
    }
    Ok(DEFAULT_TOP_K)
}

fn json(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", "application/json".parse().expect("static header"));
    response
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<String> {
    json(status, serde_json::json!({ "error": message.to_string() }).to_string())
}
