//! Turning a request body into the model's input: `[1, 32, 32, 3]` floats, RGB, pixel / 255.

use crate::multipart;
use image::{ImageFormat, ImageReader, Limits, imageops::FilterType};
use std::io::Cursor;

/// The model's input shape (NHWC).
pub const MODEL_SHAPE: [usize; 4] = [1, 32, 32, 3];
const SIDE: u32 = 32;
const VALUES: usize = 32 * 32 * 3;
/// Decoded images larger than this many pixels per side are refused (a decompression bomb guard).
const MAX_SIDE: u32 = 8192;

/// Why a body could not become an input.
#[derive(Debug, PartialEq)]
pub enum InputError {
    /// 400: the body is wrong.
    Bad(String),
    /// 415: the content type is not one we take.
    Unsupported(String),
}

/// Reads an image (raw or multipart field `image`) or a JSON tensor.
pub fn from_request(content_type: &str, body: &[u8]) -> Result<Vec<f32>, InputError> {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if body.is_empty() {
        return Err(InputError::Bad(
            "empty request body: send a PNG or JPEG image, a multipart form with an 'image' field, or a JSON tensor".into(),
        ));
    }
    match mime.as_str() {
        "application/json" => from_json(body),
        "multipart/form-data" => {
            let image = multipart::file_field(content_type, body, "image").map_err(InputError::Bad)?;
            from_image(&image)
        }
        "" | "application/octet-stream" | "image/png" | "image/jpeg" | "image/jpg" => from_image(body),
        other if other.starts_with("image/") => from_image(body),
        other => Err(InputError::Unsupported(format!(
            "content type '{other}' is not supported: send image/png, image/jpeg, multipart/form-data or application/json"
        ))),
    }
}

/// Decodes a PNG or JPEG of any size, converts it to RGB and resizes it to 32×32 (triangle filter).
pub fn from_image(bytes: &[u8]) -> Result<Vec<f32>, InputError> {
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| matches!(f, ImageFormat::Png | ImageFormat::Jpeg))
        .ok_or_else(|| InputError::Bad("the body is not a PNG or JPEG image".into()))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(128 << 20);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| InputError::Bad(format!("could not decode the {format:?} image: {e}")))?;
    let mut rgb = decoded.to_rgb8();
    if rgb.dimensions() != (SIDE, SIDE) {
        rgb = image::imageops::resize(&rgb, SIDE, SIDE, FilterType::Triangle);
    }
    Ok(rgb.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTensor {
    data: serde_json::Value,
    #[serde(default)]
    shape: Option<Vec<usize>>,
}

/// `{"data": [...], "shape": [...]}`: data flat or nested (row-major), shape `[1, 32, 32, 3]` or
/// `[32, 32, 3]`; when `shape` is absent the nesting gives it.
pub fn from_json(body: &[u8]) -> Result<Vec<f32>, InputError> {
    let tensor: JsonTensor = serde_json::from_slice(body).map_err(|e| {
        InputError::Bad(format!("invalid JSON tensor: {e}; expected {{\"data\": [...], \"shape\": [1, 32, 32, 3]}}"))
    })?;
    let mut values = Vec::with_capacity(VALUES);
    let nested_shape = flatten(&tensor.data, 0, &mut values)?;
    let shape = tensor.shape.unwrap_or(nested_shape);
    let accepted = shape == MODEL_SHAPE || shape == MODEL_SHAPE[1..];
    if !accepted {
        return Err(InputError::Bad(format!(
            "tensor 'input': expected shape [1, 32, 32, 3] (or [32, 32, 3]), got {shape:?}"
        )));
    }
    if values.len() != VALUES {
        return Err(InputError::Bad(format!(
            "tensor 'input': shape {shape:?} needs {VALUES} values, got {}",
            values.len()
        )));
    }
    Ok(values)
}

fn flatten(value: &serde_json::Value, depth: usize, out: &mut Vec<f32>) -> Result<Vec<usize>, InputError> {
    match value {
        serde_json::Value::Number(n) => {
            let v = n.as_f64().ok_or_else(|| InputError::Bad(format!("tensor 'input': {n} is not a number")))?;
            out.push(v as f32);
            Ok(Vec::new())
        }
        serde_json::Value::Array(items) if depth < 8 => {
            let mut inner: Option<Vec<usize>> = None;
            for item in items {
                let shape = flatten(item, depth + 1, out)?;
                if inner.as_ref().is_some_and(|s| *s != shape) {
                    return Err(InputError::Bad("tensor 'input': nested arrays are ragged".into()));
                }
                inner = Some(shape);
            }
            let mut shape = vec![items.len()];
            shape.extend(inner.unwrap_or_default());
            Ok(shape)
        }
        other => Err(InputError::Bad(format!(
            "tensor 'input': data must be numbers or arrays of numbers (at most 8 deep), found {}",
            match other {
                serde_json::Value::Array(_) => "arrays nested too deep".to_owned(),
                v => format!("{v}"),
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_tensors_flat_and_nested() {
        let flat = format!("{{\"data\": [{}], \"shape\": [1, 32, 32, 3]}}", vec!["0.5"; VALUES].join(","));
        assert_eq!(from_json(flat.as_bytes()).unwrap().len(), VALUES);
        let row = format!("[{}]", vec!["[0.1, 0.2, 0.3]"; 32].join(","));
        let nested = format!("{{\"data\": [{}]}}", vec![row; 32].join(","));
        assert_eq!(from_json(nested.as_bytes()).unwrap()[1], 0.2);
        let wrong = "{\"data\": [[1, 2], [3, 4]]}";
        assert!(matches!(from_json(wrong.as_bytes()), Err(InputError::Bad(m)) if m.contains("got [2, 2]")));
    }

    #[test]
    fn bodies_that_are_not_images_are_refused() {
        assert!(matches!(from_request("image/png", b"hello"), Err(InputError::Bad(_))));
        assert!(matches!(from_request("text/plain", b"hello"), Err(InputError::Unsupported(_))));
        assert!(matches!(from_request("", b""), Err(InputError::Bad(m)) if m.starts_with("empty")));
    }
}
