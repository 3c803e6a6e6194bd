//! Turning a request body into the model's input: `[1, 32, 32, 3]` floats, RGB, pixel / 255.

use spindle_sdk::{form, image, json_tensor};

/// The model's input shape (NHWC).
pub const MODEL_SHAPE: [usize; 4] = [1, 32, 32, 3];
const SIDE: u32 = 32;
const VALUES: usize = 32 * 32 * 3;

/// Why a body could not become an input.
#[derive(Debug, PartialEq)]
pub enum InputError {
    /// 400: the body is wrong.
    Bad(String),
    /// 415: the content type is not one we take.
    Unsupported(String),
}

/// Reads an image (raw, or the multipart field `image`) or a JSON tensor.
pub fn from_request(content_type: &str, body: &[u8]) -> Result<Vec<f32>, InputError> {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if body.is_empty() {
        return Err(InputError::Bad(
            "empty request body: send a PNG or JPEG image, a multipart form with an 'image' field, or a JSON tensor".into(),
        ));
    }
    let image_bytes = match mime.as_str() {
        "application/json" => return from_json(body),
        "multipart/form-data" => form::file_field(content_type, body, "image").map_err(InputError::Bad)?,
        "" | "application/octet-stream" => body.to_vec(),
        other if other.starts_with("image/") => body.to_vec(),
        other => {
            return Err(InputError::Unsupported(format!(
                "content type '{other}' is not supported: send image/png, image/jpeg, multipart/form-data or application/json"
            )));
        }
    };
    let pixels = image::decode_rgb(&image_bytes, SIDE, SIDE).map_err(InputError::Bad)?;
    Ok(image::unit_f32(&pixels))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTensor {
    data: json_tensor::Flat,
    #[serde(default)]
    shape: Option<Vec<usize>>,
}

/// `{"data": [...], "shape": [...]}`: data flat or nested (row-major), shape `[1, 32, 32, 3]` or
/// `[32, 32, 3]`; when `shape` is absent the nesting gives it.
fn from_json(body: &[u8]) -> Result<Vec<f32>, InputError> {
    let tensor: JsonTensor = serde_json::from_slice(body)
        .map_err(|e| InputError::Bad(format!("invalid JSON tensor: {e}; expected {{\"data\": [...], \"shape\": [1, 32, 32, 3]}}")))?;
    let values = tensor.data.numbers().map_err(|e| InputError::Bad(format!("tensor 'input': {e}")))?;
    let shape = tensor.shape.unwrap_or_else(|| tensor.data.shape.clone());
    if shape != MODEL_SHAPE && shape != MODEL_SHAPE[1..] {
        return Err(InputError::Bad(format!("tensor 'input': expected shape [1, 32, 32, 3] (or [32, 32, 3]), got {shape:?}")));
    }
    if values.len() != VALUES {
        return Err(InputError::Bad(format!("tensor 'input': shape {shape:?} needs {VALUES} values, got {}", values.len())));
    }
    Ok(values.iter().map(|&v| v as f32).collect())
}
