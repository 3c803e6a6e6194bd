//! The Open Inference Protocol's server-level endpoints; model endpoints are the functions' own
//! (`spindle_sdk::oip`), reached through routes like `/v2/models/cifar10/...`.
//!
//! - `GET /v2`: server metadata and the protocol extensions Spindle really supports.
//! - `GET /v2/health/live`: 200 while the process serves. `GET /v2/health/ready`: 200 once the
//!   app can serve every route (with `--preload`, once every component is compiled and every
//!   model loaded), 400 `{"ready": false}` (the protocol's false, as Triton answers it) before
//!   that and once shutdown begins.
//! - `GET /v2/models/{m}[/versions/{v}]/ready`: Triton's meaning, 200 when that model's
//!   component is compiled and its graph loaded now, 400 when not.
//! - `GET /v2/models` and Triton's `POST /v2/repository/index`: the models the routes serve.
//! - `GET /v2/models/stats`, `GET /v2/models/{m}[/versions/{v}]/stats`: the statistics
//!   extension, from what the host saw of each model's computes (`crate::nn::stats`), whichever
//!   route asked for them; the functions never see these paths.
//! - `/v2/models/{m}/...` with no route for `m`: 404 `unknown model`.

use super::response::{HostResponse, json, json_error, json_with_status};
use crate::runtime::App;
use http::{Method, StatusCode};
use serde_json::json;

/// Whether `path` is a health endpoint, which stays open for probes whatever `host_access` says.
pub fn is_health(path: &str) -> bool {
    matches!(path.trim_end_matches('/'), "/v2/health/live" | "/v2/health/ready")
}

/// Extensions whose endpoints Spindle implements in full.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "statistics"];

/// Answers a server-level protocol request, or `None` to let routing continue.
pub fn serve(app: &App, method: &Method, path: &str) -> Option<HostResponse> {
    let path = path.trim_end_matches('/');
    let get = method == Method::GET;
    Some(match path {
        "/v2" if get => json(&json!({"name": "spindle", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS})),
        "/v2/health/live" if get => json(&json!({"live": true})),
        "/v2/health/ready" if get && !app.is_ready() => {
            // The protocol's "false" is a 4xx; Triton answers 400.
            json_with_status(StatusCode::BAD_REQUEST, &json!({"live": true, "ready": false}))
        }
        "/v2/health/ready" if get => json(&json!({"live": true, "ready": true})),
        "/v2/models" if get => json(&json!({"models": index(app)})),
        "/v2/repository/index" if method == Method::POST => json(&json!(index(app))),
        "/v2/models/stats" if get => json(&json!({"model_stats": statistics(app, None, "1")})),
        _ => {
            let rest = path.strip_prefix("/v2/models/")?;
            let model = rest.split('/').next()?;
            let host_endpoint = |suffix: &str| match rest.strip_prefix(model)?.strip_suffix(suffix) {
                Some("") => Some("1"),
                Some(versioned) => versioned.strip_prefix("/versions/").filter(|v| !v.contains('/')),
                None => None,
            };
            if let Some(version) = host_endpoint("/stats") {
                if !get {
                    return Some(json_error(StatusCode::METHOD_NOT_ALLOWED, format!("use GET for {path}")));
                }
                let found = statistics(app, Some(model), version);
                return Some(if found.is_empty() {
                    json_error(
                        StatusCode::NOT_FOUND,
                        format!("no statistics for model '{model}': no component mounts a model of that name"),
                    )
                } else {
                    json(&json!({"model_stats": found}))
                });
            }
            if let Some(version) = host_endpoint("/ready") {
                if !get {
                    return Some(json_error(StatusCode::METHOD_NOT_ALLOWED, format!("use GET for {path}")));
                }
                return Some(model_ready(app, model, version));
            }
            if app.router().route(path).is_some() {
                return None;
            }
            json_error(StatusCode::NOT_FOUND, format!("unknown model '{model}' (served here: {:?})", names(app)))
        }
    })
}

/// Triton's `model_stats` for `model` (every model when `None`), summed over the components that
/// mount a model of that name.
fn statistics(app: &App, model: Option<&str>, version: &str) -> Vec<serde_json::Value> {
    let mut by_name: std::collections::BTreeMap<&str, serde_json::Value> = std::collections::BTreeMap::new();
    for component in app.components() {
        for (name, stats) in component.nn.models.stats() {
            if model.is_some_and(|m| m != name) {
                continue;
            }
            match by_name.get_mut(name) {
                Some(sum) => stats.merge_into(sum),
                None => {
                    by_name.insert(name, stats.json(name, version));
                }
            }
        }
    }
    by_name.into_values().collect()
}

/// Triton's model readiness: 200 when the model's component is compiled and, if the component
/// mounts a model of that name, its graph is loaded now; 400 (what `tritonclient` reads as not
/// ready) before that or while shutting down; 404 for a model no route serves.
fn model_ready(app: &App, model: &str, version: &str) -> HostResponse {
    let served = names(app);
    let component = app.router().route(&format!("/v2/models/{model}")).and_then(|m| app.component(m.component));
    // A catch-all route does not make every name a model: it must have its own route or be a
    // model file the component mounts.
    let Some(component) = component.filter(|c| served.iter().any(|n| n == model) || c.nn.models.is_loaded(model).is_some()) else {
        return json_error(StatusCode::NOT_FOUND, format!("unknown model '{model}' (served here: {served:?})"));
    };
    let why_not = if app.is_draining() {
        Some("the server is shutting down".to_owned())
    } else if !component.is_compiled() {
        Some(format!("component '{}' is not compiled yet (it is on first use, or at start with --preload)", component.id))
    } else if component.nn.models.is_loaded(model) == Some(false) {
        Some("its graph is not loaded yet (it is on first use, or at start with --preload)".to_owned())
    } else {
        None
    };
    match why_not {
        None => json(&json!({"name": model, "version": version, "ready": true})),
        Some(why) => json_with_status(
            StatusCode::BAD_REQUEST,
            &json!({"name": model, "version": version, "ready": false, "error": format!("model '{model}' is not ready: {why}")}),
        ),
    }
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
