//! Text recognition: PP-OCRv4's recogniser (CRNN with CTC) on each upright crop, as RapidOCR
//! does it: crops sorted by aspect ratio and run six at a time, each resized to 48 pixels high
//! (width by its ratio), normalised to [-1, 1] and padded to the batch's widest (at least 320);
//! then greedy CTC decoding: the best class at each step, repeats merged, blanks dropped, over the
//! character list the model carries (`characters.txt`, written from its metadata), with the
//! blank first and a space last.

use crate::image::Rgb;
use spindle_sdk::{Model, Tensor};

pub const MODEL: &str = "ppocr-rec";
const CHARACTERS: &str = "/models/ppocr-rec/characters.txt";
const HEIGHT: usize = 48;
const MIN_WIDTH: usize = 320;
const BATCH: usize = 6;
/// Crops wider than this many heights are squeezed to it, which bounds a batch's input (a thin
/// rule across a page would otherwise make it hundreds of megabytes).
const MAX_RATIO: f32 = 64.0;

/// A recognised line: its text and its confidence (the mean probability of its characters).
pub struct Reading {
    pub text: String,
    pub confidence: f32,
}

/// Reads each crop, in order.
pub fn recognize(crops: &[Rgb]) -> Result<Vec<Reading>, String> {
    const OUTPUT: &str = "softmax_11.tmp_0";
    let listed = std::fs::read_to_string(CHARACTERS).map_err(|e| format!("{CHARACTERS}: {e}"))?;
    let mut characters: Vec<&str> = vec![""];
    characters.extend(listed.split('\n').take(listed.split('\n').count() - 1));
    characters.push(" ");
    let model = Model::open(MODEL).map_err(|e| e.to_string())?;
    let ratio = |c: &Rgb| c.width as f32 / c.height.max(1) as f32;
    let mut order: Vec<usize> = (0..crops.len()).collect();
    order.sort_by(|&a, &b| ratio(&crops[a]).total_cmp(&ratio(&crops[b])));
    let mut readings: Vec<Option<Reading>> = (0..crops.len()).map(|_| None).collect();
    for batch in order.chunks(BATCH) {
        let widest = batch.iter().map(|&i| ratio(&crops[i]).min(MAX_RATIO)).fold(MIN_WIDTH as f32 / HEIGHT as f32, f32::max);
        let width = (HEIGHT as f32 * widest) as usize;
        let mut input = vec![0f32; batch.len() * 3 * HEIGHT * width];
        for (slot, &i) in batch.iter().enumerate() {
            let resized_width = ((HEIGHT as f32 * ratio(&crops[i])).ceil() as usize).clamp(1, width);
            let resized = crops[i].resize(resized_width, HEIGHT);
            let base = slot * 3 * HEIGHT * width;
            for y in 0..HEIGHT {
                for x in 0..resized_width {
                    let pixel = &resized.pixels[(y * resized_width + x) * 3..][..3];
                    for c in 0..3 {
                        input[base + (c * HEIGHT + y) * width + x] = f32::from(pixel[2 - c]) / 255.0 * 2.0 - 1.0;
                    }
                }
            }
        }
        let tensor = Tensor::from_f32(&[batch.len(), 3, HEIGHT, width], &input).map_err(|e| e.to_string())?;
        let outputs = model.run(&[("x", tensor)]).map_err(|e| e.to_string())?;
        let probabilities = outputs.get(OUTPUT).map_err(|e| e.to_string())?;
        let shape = probabilities.shape().to_vec();
        let probabilities = probabilities.to_f32().map_err(|e| e.to_string())?;
        let &[rows, steps, classes] = &shape[..] else {
            return Err(format!("the recogniser answered shape {shape:?}"));
        };
        let (steps, classes) = (steps as usize, classes as usize);
        if rows as usize != batch.len() || classes != characters.len() || probabilities.len() != batch.len() * steps * classes {
            return Err(format!("the recogniser answered shape {shape:?} for {} crops and {} classes", batch.len(), characters.len()));
        }
        for (slot, &i) in batch.iter().enumerate() {
            let rows = &probabilities[slot * steps * classes..][..steps * classes];
            readings[i] = Some(decode(rows, classes, &characters));
        }
    }
    Ok(readings.into_iter().map(|r| r.unwrap_or(Reading { text: String::new(), confidence: 0.0 })).collect())
}

/// Greedy CTC over `steps × classes` probabilities.
fn decode(rows: &[f32], classes: usize, characters: &[&str]) -> Reading {
    let mut text = String::new();
    let mut kept = Vec::new();
    let mut previous = usize::MAX;
    for row in rows.chunks_exact(classes) {
        let (best, probability) = row.iter().enumerate().fold((0, f32::MIN), |best, (i, &p)| if p > best.1 { (i, p) } else { best });
        if best != 0 && best != previous {
            text.push_str(characters.get(best).copied().unwrap_or(""));
            kept.push(probability);
        }
        previous = best;
    }
    let confidence = if kept.is_empty() { 0.0 } else { kept.iter().sum::<f32>() / kept.len() as f32 };
    Reading { text, confidence }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_merge_and_blanks_separate() {
        let characters = ["", "a", "b", " "];
        let step = |class: usize| -> Vec<f32> { (0..4).map(|c| if c == class { 0.9 } else { 0.1 / 3.0 }).collect() };
        let rows: Vec<f32> = [1, 1, 0, 1, 2, 2, 3, 0].iter().flat_map(|&c| step(c)).collect();
        let reading = decode(&rows, 4, &characters);
        assert_eq!(reading.text, "aab ");
        assert!((reading.confidence - 0.9).abs() < 1e-6);
    }
}
