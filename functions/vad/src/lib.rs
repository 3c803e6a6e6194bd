//! Silero voice activity detection behind HTTP: a WAV file in, speech segments out.
//!
//! - `POST /models/vad/segments[?threshold=0.5&min_speech_ms=250&min_silence_ms=100&speech_pad_ms=30]`
//!   with a WAV body (16 kHz mono is the model's own; 8–48 kHz is resampled, stereo mixed down)
//!   answers `{"segments": [{"start": s, "end": s}], "duration": s, ...}`, times in seconds.
//!   `&probabilities=true` adds the speech probability of every 32 ms window.
//! - `GET /models/vad` describes the model and the parameters.
//!
//! The model is Silero's "sequence" export: one `wasi:nn` compute runs up to 512 windows (each
//! its 512 samples after the 64 before them), and its LSTM state (`h`, `c`) is carried from one
//! compute to the next inside the function, so any length of audio is one pass.

mod audio;
mod segments;

use segments::{Settings, WINDOW};
use serde_json::{Value, json};
use spin_sdk::http::{Request, body::IncomingBodyExt};
use spindle_sdk::oip::{Response, json as answer};
use spindle_sdk::{Model, Tensor};

const MODEL: &str = "vad";
/// Samples of the previous window each window is given as context.
const CONTEXT: usize = 64;
/// Windows per compute.
const WINDOWS_PER_COMPUTE: usize = 512;
const STATE: [usize; 3] = [1, 1, 128];

#[spin_sdk::http_service]
async fn handle(req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let info = req.headers().get("spin-path-info").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = info.unwrap_or_else(|| req.uri().path().strip_prefix("/models/vad").unwrap_or(req.uri().path()).to_owned());
    let query = req.uri().query().unwrap_or("").to_owned();
    match (method.as_str(), path.trim_end_matches('/')) {
        ("POST", "/segments") => {
            let body = match req.into_body().bytes().await {
                Ok(body) => body,
                Err(e) => return answer(400, &json!({"error": format!("could not read the request body: {e}")})),
            };
            match detect(&query, &body) {
                Ok(found) => answer(200, &found),
                Err((status, message)) => answer(status, &json!({"error": message})),
            }
        }
        (_, "/segments") => answer(405, &json!({"error": "use POST with a WAV file"})),
        ("GET", "") => answer(200, &describe()),
        (_, "") => answer(405, &json!({"error": "use GET"})),
        (_, other) => answer(404, &json!({"error": format!("no such endpoint {other}; try POST /models/vad/segments")})),
    }
}

fn describe() -> Value {
    json!({
        "name": "silero-vad",
        "input": "a WAV file: PCM 8–32 bit or 32-bit float, 8–48 kHz (16 kHz is the model's own), any number of channels (mixed down), at most 600 s",
        "output": "speech segments, {start, end} in seconds",
        "parameters": {"threshold": 0.5, "min_speech_ms": 250, "min_silence_ms": 100, "speech_pad_ms": 30, "probabilities": false},
        "endpoints": ["POST /models/vad/segments"],
    })
}

type Failure = (u16, String);

fn detect(query: &str, body: &[u8]) -> Result<Value, Failure> {
    let (settings, with_probabilities) = settings(query).map_err(|e| (400, e))?;
    let audio = audio::decode(body).map_err(|e| (400, e))?;
    let probabilities = speech_probabilities(&audio.samples)?;
    let seconds = |samples: usize| (samples as f64 / f64::from(audio::RATE) * 1000.0).round() / 1000.0;
    let found = segments::segments(&probabilities, audio.samples.len(), settings);
    let mut answer = json!({
        "segments": found.iter().map(|&(start, end)| json!({"start": seconds(start), "end": seconds(end)})).collect::<Vec<_>>(),
        "duration": seconds(audio.samples.len()),
        "sample_rate": audio.source_rate,
        "channels": audio.source_channels,
        "resampled": audio.source_rate != audio::RATE,
    });
    if with_probabilities {
        answer["window_seconds"] = json!(WINDOW as f64 / f64::from(audio::RATE));
        answer["probabilities"] = json!(probabilities);
    }
    Ok(answer)
}

/// Runs the model over every 512-sample window (the last padded with zeros), carrying its
/// recurrent state from one compute to the next.
fn speech_probabilities(samples: &[f32]) -> Result<Vec<f32>, Failure> {
    let internal = |e: spindle_sdk::Error| (500, e.to_string());
    let model = Model::open(MODEL).map_err(internal)?;
    let windows = samples.len().div_ceil(WINDOW);
    let mut h = vec![0f32; 128];
    let mut c = vec![0f32; 128];
    let mut probabilities = Vec::with_capacity(windows);
    let mut context = [0f32; CONTEXT];
    for first in (0..windows).step_by(WINDOWS_PER_COMPUTE) {
        let count = WINDOWS_PER_COMPUTE.min(windows - first);
        let mut block = Vec::with_capacity(count * (CONTEXT + WINDOW));
        for w in first..first + count {
            let start = w * WINDOW;
            let mut window = [0f32; WINDOW];
            let available = samples.len().saturating_sub(start).min(WINDOW);
            window[..available].copy_from_slice(&samples[start..start + available]);
            block.extend_from_slice(&context);
            block.extend_from_slice(&window);
            context.copy_from_slice(&window[WINDOW - CONTEXT..]);
        }
        let outputs = model
            .run(&[
                ("input", Tensor::from_f32(&[count, CONTEXT + WINDOW], &block).map_err(internal)?),
                ("h", Tensor::from_f32(&STATE, &h).map_err(internal)?),
                ("c", Tensor::from_f32(&STATE, &c).map_err(internal)?),
            ])
            .map_err(internal)?;
        let found = outputs.get("speech_probs").and_then(Tensor::to_f32).map_err(internal)?;
        if found.len() != count {
            return Err((500, format!("the model answered {} probabilities for {count} windows", found.len())));
        }
        probabilities.extend(found);
        h = outputs.get("hn").and_then(Tensor::to_f32).map_err(internal)?;
        c = outputs.get("cn").and_then(Tensor::to_f32).map_err(internal)?;
    }
    Ok(probabilities)
}

fn settings(query: &str) -> Result<(Settings, bool), String> {
    let ms = |v: f64| (v * f64::from(audio::RATE) / 1000.0) as usize;
    let mut settings = Settings { threshold: 0.5, min_speech: ms(250.0), min_silence: ms(100.0), pad: ms(30.0) };
    let mut probabilities = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |range: std::ops::RangeInclusive<f64>| {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| range.contains(v))
                .ok_or_else(|| format!("{key} must be a number from {} to {}, got '{value}'", range.start(), range.end()))
        };
        match key {
            "threshold" => settings.threshold = number(0.01..=0.99)? as f32,
            "min_speech_ms" => settings.min_speech = ms(number(0.0..=60_000.0)?),
            "min_silence_ms" => settings.min_silence = ms(number(0.0..=60_000.0)?),
            "speech_pad_ms" => settings.pad = ms(number(0.0..=5_000.0)?),
            "probabilities" => {
                probabilities = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("probabilities must be true or false, got '{value}'")),
                }
            }
            other => {
                return Err(format!(
                    "unknown parameter '{other}' (threshold, min_speech_ms, min_silence_ms, speech_pad_ms, probabilities)"
                ));
            }
        }
    }
    Ok((settings, probabilities))
}
