//! PP-OCRv4 behind HTTP: an image in, its text lines out, with boxes and confidences; the whole
//! pipeline inside the function, both models through `wasi:nn`.
//!
//! - `POST /models/ocr/read` with a PNG or JPEG (raw body, or a multipart form field `image`)
//!   answers `{"lines": [{"text", "confidence", "box": [[x, y] × 4]}], "width", "height"}`, lines
//!   top to bottom, boxes clockwise from the top-left in the image's pixels. `?min_confidence=0.5`
//!   (the default) drops lines read with less.
//! - `GET /models/ocr` describes it.
//!
//! Detection ([`detect`]) finds each line's rotated rectangle; each is cropped upright
//! ([`image::Rgb::crop`]) and read ([`recognize`]).

mod detect;
mod geometry;
mod image;
mod recognize;

use serde_json::{Value, json};
use spin_sdk::http::{Request, body::IncomingBodyExt};
use spindle_sdk::oip::{Response, json as answer};

#[spin_sdk::http_service]
async fn handle(req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let info = req.headers().get("spin-path-info").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = info.unwrap_or_else(|| req.uri().path().strip_prefix("/models/ocr").unwrap_or(req.uri().path()).to_owned());
    let query = req.uri().query().unwrap_or("").to_owned();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    match (method.as_str(), path.trim_end_matches('/')) {
        ("POST", "/read") => {
            let body = match req.into_body().bytes().await {
                Ok(body) => body,
                Err(e) => return answer(400, &json!({"error": format!("could not read the request body: {e}")})),
            };
            match read(&content_type, &query, &body) {
                Ok(found) => answer(200, &found),
                Err((status, message)) => answer(status, &json!({"error": message})),
            }
        }
        (_, "/read") => answer(405, &json!({"error": "use POST with a PNG or JPEG image"})),
        ("GET", "") => answer(
            200,
            &json!({
                "name": "ppocr-v4",
                "models": [detect::MODEL, recognize::MODEL],
                "input": "a PNG or JPEG image (raw body, or multipart field 'image'), at most 8192 pixels a side",
                "output": "text lines, top to bottom: {text, confidence, box: four [x, y] corners clockwise from the top-left}",
                "parameters": {"min_confidence": 0.5},
                "endpoints": ["POST /models/ocr/read"],
            }),
        ),
        (_, "") => answer(405, &json!({"error": "use GET"})),
        (_, other) => answer(404, &json!({"error": format!("no such endpoint {other}; try POST /models/ocr/read")})),
    }
}

/// A status and what to say.
pub type Failure = (u16, String);

fn read(content_type: &str, query: &str, body: &[u8]) -> Result<Value, Failure> {
    let min_confidence = min_confidence(query).map_err(|e| (400, e))?;
    let bytes = if content_type.starts_with("multipart/form-data") {
        spindle_sdk::form::file_field(content_type, body, "image").map_err(|e| (400, e))?
    } else if body.is_empty() {
        return Err((400, "the body is empty: send a PNG or JPEG image".into()));
    } else {
        body.to_vec()
    };
    let picture = image::Rgb::decode(&bytes).map_err(|e| (400, e))?;
    let page = Page::of(&picture);
    let boxes = detect::detect(&page.image)?;
    let crops: Vec<image::Rgb> = boxes.iter().map(|b| page.image.crop(&b.corners)).collect();
    let readings = recognize::recognize(&crops).map_err(|e| (500, e))?;
    let lines: Vec<Value> = boxes
        .iter()
        .zip(readings)
        .filter(|(_, r)| r.confidence >= min_confidence && !r.text.is_empty())
        .map(|(b, r)| {
            json!({
                "text": r.text,
                "confidence": (f64::from(r.confidence) * 10_000.0).round() / 10_000.0,
                "box": b.corners.map(|p| page.to_original(p, picture.width, picture.height)),
            })
        })
        .collect();
    Ok(json!({"lines": lines, "width": picture.width, "height": picture.height}))
}

/// The image the models see, as RapidOCR prepares it: a longest side over 2000 pixels shrunk to
/// 2000 and a shortest under 30 grown to 30 (both sides then multiples of 32), and an image no
/// taller than 30 or wider than 8:1 given black bands above and below; with the way back to
/// the original's pixels.
struct Page {
    image: image::Rgb,
    scale: (f32, f32),
    top: usize,
}

impl Page {
    const MAX_SIDE: usize = 2000;
    const MIN_SIDE: usize = 30;
    const MAX_RATIO: usize = 8;

    fn of(picture: &image::Rgb) -> Page {
        let (width, height) = (picture.width, picture.height);
        let ratio = if width.max(height) > Self::MAX_SIDE {
            Self::MAX_SIDE as f32 / width.max(height) as f32
        } else if width.min(height) < Self::MIN_SIDE {
            Self::MIN_SIDE as f32 / width.min(height) as f32
        } else {
            1.0
        };
        let to_32 = |side: usize| ((((side as f32 * ratio) as usize) as f32 / 32.0).round() as usize * 32).max(32);
        let image = if ratio == 1.0 { picture.clone() } else { picture.resize(to_32(width), to_32(height)) };
        let scale = (width as f32 / image.width as f32, height as f32 / image.height as f32);
        let (w, h) = (image.width, image.height);
        if h <= Self::MIN_SIDE || w > Self::MAX_RATIO * h {
            let top = ((w / Self::MAX_RATIO).max(Self::MIN_SIDE) * 2).abs_diff(h) / 2;
            return Page { image: image.letterbox(top), scale, top };
        }
        Page { image, scale, top: 0 }
    }

    fn to_original(&self, p: geometry::Point, width: usize, height: usize) -> [i64; 2] {
        let x = (p[0] * self.scale.0).clamp(0.0, width as f32 - 1.0);
        let y = ((p[1] - self.top as f32) * self.scale.1).clamp(0.0, height as f32 - 1.0);
        [x as i64, y as i64]
    }
}

fn min_confidence(query: &str) -> Result<f32, String> {
    let mut min = 0.5;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "min_confidence" => {
                min = value
                    .parse::<f32>()
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| format!("min_confidence must be a number from 0 to 1, got '{value}'"))?
            }
            other => return Err(format!("unknown parameter '{other}' (min_confidence)")),
        }
    }
    Ok(min)
}
