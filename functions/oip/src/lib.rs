//! Any ONNX model behind the Open Inference Protocol (KServe v2), with no code of its own.
//!
//! Serves `/v2/models/NAME/...` for every model mounted at `/models/NAME/` with its declared
//! description `model.json` beside `model.onnx`. `spindle new oip NAME --model FILE.onnx` writes
//! both and gives a component this source, the two files, and the route `/v2/models/NAME/...`:
//!
//! ```toml
//! [component.ppocr-det]
//! source = "target/wasm32-wasip2/release/oip.wasm"
//! files = ["models/ppocr-det/model.onnx", "models/ppocr-det/model.json"]
//! ```

use spin_sdk::http::{Request, body::IncomingBodyExt};
use spindle_sdk::oip::{self, ModelConfig, Response};

#[spin_sdk::http_service]
async fn handle(req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let Some(name) = path.strip_prefix("/v2/models/").and_then(|rest| rest.split('/').next()).filter(|n| !n.is_empty()) else {
        return oip::error(404, format!("no such endpoint {path}: this function serves /v2/models/NAME/..."));
    };
    let config = match std::fs::read_to_string(format!("/models/{name}/model.json")) {
        Ok(text) => match ModelConfig::from_json(&text) {
            Ok(config) => config,
            Err(e) => return oip::error(500, format!("/models/{name}/model.json: {e}")),
        },
        Err(_) => return oip::error(404, format!("unknown model '{name}': nothing is mounted at /models/{name}/model.json")),
    };
    let headers = req.headers().clone();
    let body = match req.into_body().bytes().await {
        Ok(body) => body,
        Err(e) => return oip::error(400, format!("could not read the request body: {e}")),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    oip::serve(&method, &path, header, &body, &[config]).unwrap_or_else(|| oip::error(404, format!("no such endpoint {path}")))
}
