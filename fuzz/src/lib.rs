//! Fuzz targets: every parser a client or a manifest author reaches, each a function of bytes
//! that panics when a property breaks (a panic anywhere inside is a finding too).
//!
//! The same functions run two ways: coverage-guided under libFuzzer (`scripts/fuzz`, the
//! binaries in `fuzz_targets/`), and on stable under `cargo test` (`tests/targets.rs`), over the
//! seeds in `seeds/TARGET/`, the regressions in `regressions/TARGET/` (every crash or hang
//! fuzzing found) and proptest's mutations of the seeds.
//!
//! Targets whose input has parts take them from the first bytes, so that libFuzzer can steer
//! each part (see each target's documentation); the seeds are written in the same layout.

use spindle_manifest::Manifest;
use spindle_sdk::oip::{self, ModelConfig};
use spindle_sdk::{form, image, json_tensor};
use spindle_tensor::{ElementType, MAX_TENSOR_BYTES, MAX_TENSOR_RANK};
use std::path::Path;

/// A target: its name (the folder of its seeds and regressions) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("oip_infer", oip_infer),
    ("json_tensor", json_tensor),
    ("multipart", multipart),
    ("image", image),
    ("manifest", manifest),
    ("routes", routes),
    ("tensor", tensor),
];

/// The models the protocol target decodes requests for: the CNN's own declaration, and one
/// with every datatype, variable dimensions and two inputs.
fn models() -> &'static [ModelConfig; 2] {
    static MODELS: std::sync::OnceLock<[ModelConfig; 2]> = std::sync::OnceLock::new();
    MODELS.get_or_init(|| {
        let cnn = ModelConfig::from_json(include_str!("../../models/cifar10/model.json")).expect("cifar10 model.json");
        let mixed = ModelConfig::from_json(
            r#"{"name": "mixed", "platform": "onnxruntime_onnx", "versions": ["1", "2"], "max_batch_size": 0,
                "inputs": [{"name": "a", "datatype": "INT64", "shape": [-1, -1]},
                           {"name": "b", "datatype": "UINT8", "shape": [-1, 2, -1]},
                           {"name": "c", "datatype": "FP16", "shape": [-1]}],
                "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}]}"#,
        )
        .expect("mixed model");
        [cnn, mixed]
    })
}

/// Splits `data` at the first `\n`: `(line, rest)`, or `(data, [])` when it has none.
fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The Open Inference Protocol's infer request, JSON and binary (`Inference-Header-Content-Length`
/// framing, `binary_data_size`). Layout: a flags byte (bit 0: which model; bit 1: an
/// `Inference-Header-Content-Length` header follows, up to `\n`), then the body.
pub fn oip_infer(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let model = &models()[usize::from(flags & 1)];
    let (header, body) = if flags & 2 != 0 {
        let (header, body) = line(rest);
        (Some(String::from_utf8_lossy(header).into_owned()), body)
    } else {
        (None, rest)
    };
    let Ok(decoded) = oip::decode(model, header.as_deref(), body) else { return };
    let request: serde_json::Value = {
        let json_len = header.and_then(|h| h.trim().parse::<usize>().ok()).unwrap_or(body.len());
        serde_json::from_slice(&body[..json_len]).expect("a decoded request is JSON")
    };
    assert_eq!(decoded.inputs.len(), model.inputs.len(), "every declared input, once");
    for (name, tensor) in &decoded.inputs {
        let declared = model.inputs.iter().find(|t| &t.name == name).expect("only declared inputs");
        let ty = oip::element_type(&declared.datatype).expect("declared datatypes are carried");
        assert_eq!(tensor.element_type(), ty);
        let sent = request["inputs"].as_array().unwrap().iter().find(|i| i["name"] == name.as_str()).unwrap();
        let sent_shape: Vec<u64> = sent["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        let shape: Vec<u64> = tensor.shape().iter().map(|&d| u64::from(d)).collect();
        assert_eq!(shape, sent_shape, "input '{name}' keeps the shape the client sent");
        assert_eq!(Some(tensor.bytes().len()), spindle_tensor::byte_len(shape, ty), "input '{name}' has the bytes its shape needs");
    }
    for (name, _) in &decoded.outputs {
        assert!(model.outputs.iter().any(|t| &t.name == name), "only declared outputs");
    }
}

/// JSON tensor data, nested or flat, as the protocol's `data` field.
pub fn json_tensor(data: &[u8]) {
    let Ok(flat) = serde_json::from_slice::<json_tensor::Flat>(data) else { return };
    if let Ok(numbers) = flat.numbers() {
        let value: serde_json::Value = serde_json::from_slice(data).expect("parsed once already");
        fn leaves(v: &serde_json::Value) -> usize {
            match v {
                serde_json::Value::Array(items) => items.iter().map(leaves).sum(),
                _ => 1,
            }
        }
        assert_eq!(numbers.len(), leaves(&value), "one number per leaf");
        assert_eq!(numbers.len(), flat.shape.iter().product::<usize>(), "as many numbers as the shape holds");
    }
}

/// `multipart/form-data`. Layout: the `Content-Type` header up to `\n`, the field's name up to
/// `\n`, then the body.
pub fn multipart(data: &[u8]) {
    let (content_type, rest) = line(data);
    let (name, body) = line(rest);
    let content_type = String::from_utf8_lossy(content_type);
    let name = String::from_utf8_lossy(name);
    if let Ok(field) = form::file_field(&content_type, body, &name) {
        assert!(field.is_empty() || body.windows(field.len()).any(|w| w == field.as_slice()), "a field's contents are a part of the body");
    }
}

/// PNG and JPEG decoding, at the image's own size and resized to the CNN's 32 × 32.
pub fn image(data: &[u8]) {
    if let Ok((width, height, pixels)) = image::decode_rgb_native(data) {
        assert!(width <= image::MAX_SIDE && height <= image::MAX_SIDE);
        assert_eq!(pixels.len() as u64, u64::from(width) * u64::from(height) * 3);
        let resized = image::decode_rgb(data, 32, 32).expect("an image that decodes once decodes again");
        assert_eq!(resized.len(), 32 * 32 * 3);
    }
}

/// `spin.toml`: parsing and every check that needs only the file. A manifest that is accepted
/// routes each of its own routes to the component that declares it.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(manifest) = Manifest::parse(Path::new("/fuzz/spin.toml"), &text) else { return };
    for (route, component) in manifest.router.routes() {
        assert!(manifest.app.component.contains_key(component), "route {route} names a declared component");
        let path = route.strip_suffix("/...").unwrap_or(&route);
        let found = manifest.router.route(path).expect("an app's own route is routed");
        if !route.ends_with("/...") {
            assert_eq!(found.component, component, "exact route {route}");
        }
    }
}

/// Route matching, against a reference written from Spin's rules. Layout: one route per line up
/// to an empty line, then one request path per line.
pub fn routes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (routes, paths) = text.split_once("\n\n").unwrap_or((&text, ""));
    let routes: Vec<&str> = routes.lines().take(16).collect();
    let mut toml = String::from("spin_manifest_version = 2\n[application]\nname = \"fuzz\"\n");
    for (i, route) in routes.iter().enumerate() {
        let route = serde_json::to_string(route).expect("a string");
        toml += &format!("[[trigger.http]]\nroute = {route}\ncomponent = \"c{i}\"\n[component.c{i}]\nsource = \"c.wasm\"\n");
    }
    let router = match Manifest::parse(Path::new("/fuzz/spin.toml"), &toml) {
        Ok(manifest) => manifest.router,
        Err(_) => return,
    };
    for path in paths.lines().take(16) {
        let got = router.route(path).map(|m| (m.component.as_str().to_owned(), m.path_info));
        assert_eq!(got, reference_route(&routes, path), "path {path:?} with routes {routes:?}");
    }
}

/// Spin's routing, written plainly: trailing slashes do not count; an exact route wins; else the
/// longest wildcard prefix that ends at a segment boundary, with the rest as path info.
fn reference_route(routes: &[&str], path: &str) -> Option<(String, String)> {
    let path = path.trim_end_matches('/');
    let component = |i: usize| format!("c{i}");
    if let Some(i) = routes.iter().position(|r| !r.ends_with("/...") && r.trim_end_matches('/') == path) {
        return Some((component(i), String::new()));
    }
    routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let prefix = r.strip_suffix("/...")?.trim_end_matches('/');
            let rest = path.strip_prefix(prefix)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| (prefix.len(), i, rest.to_owned()))
        })
        .max_by_key(|&(len, i, _)| (len, std::cmp::Reverse(i)))
        .map(|(_, i, rest)| (component(i), rest))
}

/// The tensor rules the host applies to every tensor a guest hands `wasi:nn`, against a
/// reference in 128-bit arithmetic. Layout: element type, data length (8 bytes, little-endian),
/// then up to 10 dimensions of 4 bytes each.
pub fn tensor(data: &[u8]) {
    const TYPES: [ElementType; 7] =
        [ElementType::F16, ElementType::F32, ElementType::F64, ElementType::Bf16, ElementType::U8, ElementType::I32, ElementType::I64];
    let Some((&ty, rest)) = data.split_first() else { return };
    let ty = TYPES[usize::from(ty) % TYPES.len()];
    let Some((len, rest)) = rest.split_first_chunk::<8>() else { return };
    let data_len = u64::from_le_bytes(*len) as usize;
    let dims: Vec<u32> = rest.chunks_exact(4).take(10).map(|d| u32::from_le_bytes(d.try_into().expect("4 bytes"))).collect();

    let extent = dims.iter().filter(|&&d| d != 0).fold(ty.size() as u128, |n, &d| n.saturating_mul(u128::from(d)));
    let bytes = if dims.contains(&0) { 0 } else { extent };
    let expected = if dims.len() > MAX_TENSOR_RANK {
        Err("rank")
    } else if extent > MAX_TENSOR_BYTES as u128 {
        Err("size")
    } else if bytes != data_len as u128 {
        Err("length")
    } else {
        Ok(())
    };
    let got = spindle_tensor::check("t", &dims, ty, data_len).map_err(|e| match e.kind {
        spindle_tensor::TensorErrorKind::RankTooHigh { .. } => "rank",
        spindle_tensor::TensorErrorKind::TooLarge { .. } => "size",
        spindle_tensor::TensorErrorKind::LengthMismatch { .. } => "length",
    });
    assert_eq!(got, expected, "dims {dims:?} of {ty}, {data_len} bytes");
}
