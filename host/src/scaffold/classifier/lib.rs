//! An image classifier behind HTTP, written by `spindle new classifier`. What it knows about its
//! model (names, input size and layout, normalisation, labels) is in `model.rs`; this file is
//! the same for every classifier. Paths are relative to the component's routes:
//!
//! - `POST /models/NAME/classify[?top_k=N]` with a PNG or JPEG (raw body, or a multipart form
//!   field `image`) answers the top-k labels with probabilities, best first;
//! - `GET /models/NAME` describes the model;
//! - the Open Inference Protocol (KServe v2) under `/v2/models/NAME/...`, from `model.json`.
//!
//! Every bad request gets a 4xx with `{"error": "..."}` saying what was wrong.

mod model;

use model::Layout;
use spin_sdk::http::{Request, body::IncomingBodyExt};
use spindle_sdk::oip::{self, Response};
use spindle_sdk::{ErrorKind, Model, Tensor, form, image};

const DEFAULT_TOP_K: usize = 5;

/// One answer: a label and its probability.
#[derive(serde::Serialize)]
struct Prediction<'a> {
    label: &'a str,
    probability: f32,
}

#[spin_sdk::http_service]
async fn handle(req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let path_info = match req.headers().get("spin-path-info").and_then(|v| v.to_str().ok()) {
        Some(info) => info.to_owned(),
        None => path.strip_prefix(&format!("/models/{}", model::NAME)).unwrap_or(&path).to_owned(),
    };
    let headers = req.headers().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = match req.into_body().bytes().await {
        Ok(body) => body,
        Err(e) => return oip::error(400, format!("could not read the request body: {e}")),
    };
    if path.starts_with("/v2/models/") {
        let config = match oip::ModelConfig::from_json(model::CONFIG) {
            Ok(config) => config,
            Err(e) => return oip::error(500, format!("model.json: {e}")),
        };
        return oip::serve(&method, &path, header, &body, &[config]).unwrap_or_else(|| oip::error(404, format!("no such endpoint {path}")));
    }
    match (path_info.trim_end_matches('/'), method.as_str()) {
        ("/classify", "POST") => classify(&header("content-type").unwrap_or_default(), &query, &body),
        ("", "GET") => oip::json(200, &describe()),
        ("/classify", _) => not_allowed("POST", "use POST with a PNG or JPEG image"),
        ("", _) => not_allowed("GET", "use GET"),
        _ => oip::error(404, format!("no such endpoint {path}; try POST /models/{}/classify", model::NAME)),
    }
}

fn classify(content_type: &str, query: &str, body: &[u8]) -> Response {
    let top_k = match top_k(query) {
        Ok(k) => k,
        Err(message) => return oip::error(400, message),
    };
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let image_bytes = match mime.as_str() {
        _ if body.is_empty() => return oip::error(400, "empty request body: send a PNG or JPEG image, or a multipart form with an 'image' field"),
        "multipart/form-data" => match form::file_field(content_type, body, "image") {
            Ok(bytes) => bytes,
            Err(message) => return oip::error(400, message),
        },
        "" | "application/octet-stream" => body.to_vec(),
        other if other.starts_with("image/") => body.to_vec(),
        other => return oip::error(415, format!("content type '{other}' is not supported: send image/png, image/jpeg or multipart/form-data")),
    };
    let pixels = match image::decode_rgb(&image_bytes, model::WIDTH, model::HEIGHT) {
        Ok(pixels) => pixels,
        Err(message) => return oip::error(400, message),
    };
    match predict(&pixels, top_k) {
        Ok(predictions) => oip::json(200, &serde_json::json!(predictions)),
        Err(e) if e.kind() == ErrorKind::InvalidInput => oip::error(400, e.to_string()),
        Err(e) => oip::error(500, e.to_string()),
    }
}

/// Runs the model on one image (`HEIGHT × WIDTH` RGB bytes, HWC) and returns the top `k` labels.
fn predict(pixels: &[u8], k: usize) -> Result<Vec<Prediction<'static>>, spindle_sdk::Error> {
    let model = Model::open(model::NAME)?;
    let input = Tensor::from_f32(&model::SHAPE, &normalise(pixels))?;
    let outputs = model.run(&[(model::INPUT, input)])?;
    let mut scores = outputs.get(model::OUTPUT)?.to_f32()?;
    if model::SOFTMAX {
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        scores.iter_mut().for_each(|s| *s = (*s - max).exp());
        let sum: f32 = scores.iter().sum();
        scores.iter_mut().for_each(|s| *s /= sum);
    }
    let labels = labels();
    let mut ranked: Vec<(usize, f32)> = scores.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(ranked.into_iter().take(k).map(|(i, probability)| Prediction { label: labels.get(i).copied().unwrap_or("?"), probability }).collect())
}

/// `(pixel / 255 - MEAN[c]) / STD[c]`, in the model's layout.
fn normalise(pixels: &[u8]) -> Vec<f32> {
    let value = |i: usize| {
        let c = i % 3;
        (f32::from(pixels[i]) / 255.0 - model::MEAN[c]) / model::STD[c]
    };
    match model::LAYOUT {
        Layout::Nhwc => (0..pixels.len()).map(value).collect(),
        Layout::Nchw => (0..3).flat_map(|c| (0..pixels.len() / 3).map(move |p| p * 3 + c)).map(value).collect(),
    }
}

fn labels() -> Vec<&'static str> {
    model::LABELS.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

fn describe() -> serde_json::Value {
    serde_json::json!({
        "name": model::NAME,
        "input": { "name": model::INPUT, "datatype": "FP32", "shape": model::SHAPE, "layout": model::LAYOUT.as_str(),
                   "normalisation": { "mean": model::MEAN, "std": model::STD } },
        "output": { "name": model::OUTPUT, "labels": labels().len(), "softmax": model::SOFTMAX },
        "labels": labels(),
        "endpoints": [format!("POST /models/{}/classify[?top_k=N]", model::NAME), format!("/v2/models/{}/...", model::NAME)],
    })
}

fn top_k(query: &str) -> Result<usize, String> {
    let labels = labels().len();
    for (key, value) in query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))) {
        if key == "top_k" {
            return match value.parse::<usize>() {
                Ok(k) if (1..=labels).contains(&k) => Ok(k),
                _ => Err(format!("top_k must be a whole number from 1 to {labels}, got '{value}'")),
            };
        }
    }
    Ok(DEFAULT_TOP_K.min(labels))
}

fn not_allowed(allow: &'static str, message: &str) -> Response {
    let mut response = oip::error(405, message);
    response.headers_mut().insert("allow", spin_sdk::http::HeaderValue::from_static(allow));
    response
}
