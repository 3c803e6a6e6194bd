//! The Open Inference Protocol's server-level endpoints; model endpoints are the functions' own
//! (`spindle_sdk::oip`), reached through routes like `/v2/models/cifar10/...`.
//!
//! - `GET /v2`: server metadata and the protocol extensions Spindle really supports.
//! - `GET /v2/health/live`, `GET /v2/health/ready`: the listener only opens once the app is built
//!   (and, with `--preload`, every model loaded), so both are 200 while serving.
//! - `GET /v2/models` and Triton's `POST /v2/repository/index`: the models the routes serve.
//! - `/v2/models/{m}/...` with no route for `m`: 404 `unknown model`.

use super::response::{HostResponse, json, json_error};
use crate::runtime::App;
use http::{Method, StatusCode};
use serde_json::json;

/// Extensions whose endpoints Spindle implements in full.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data"];

/// Answers a server-level protocol request, or `None` to let routing continue.
pub fn serve(app: &App, method: &Method, path: &str) -> Option<HostResponse> {
    let path = path.trim_end_matches('/');
    let get = method == Method::GET;
    Some(match path {
        "/v2" if get => json(&json!({"name": "spindle", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS})),
        "/v2/health/live" | "/v2/health/ready" if get => json(&json!({"live": true, "ready": true})),
        "/v2/models" if get => json(&json!({"models": index(app)})),
        "/v2/repository/index" if method == Method::POST => json(&json!(index(app))),
        _ => {
            let model = path.strip_prefix("/v2/models/")?.split('/').next()?;
            if app.router().route(path).is_some() {
                return None;
            }
            json_error(StatusCode::NOT_FOUND, format!("unknown model '{model}' (served here: {:?})", names(app)))
        }
    })
}

fn names(app: &App) -> Vec<String> {
    app.router()
        .routes()
        .filter_map(|(route, _)| route.strip_prefix("/v2/models/")?.strip_suffix("/...").map(str::to_owned))
        .filter(|name| !name.contains('/'))
        .collect()
}

fn index(app: &App) -> Vec<serde_json::Value> {
    let mut names = names(app);
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let component = app.router().route(&format!("/v2/models/{name}")).and_then(|m| app.component(m.component));
            json!({
                "name": name,
                "state": "READY",
                "component": component.map(|c| c.id.to_string()),
                "engine": component.map(|c| c.placement().backend.name()),
                "device": component.map(|c| c.placement().device.as_str()),
            })
        })
        .collect()
}
