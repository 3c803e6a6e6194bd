//! Text detection: PP-OCRv4's detector (DB, differentiable binarisation) and its
//! post-processing, as RapidOCR does it: resize so the shorter side is at least 736 and both are
//! multiples of 32, normalise to [-1, 1]; then threshold the text map at 0.3, dilate 2×2, take
//! each connected region's minimum-area rectangle, keep those whose mean text score is at least
//! 0.5, grow each by `area × 1.6 / perimeter` (unclip), and map them back to the image.

use crate::geometry::{Point, area_and_perimeter, convex_hull, grow, inside, min_area_rect, mini_box};
use crate::image::Rgb;
use spindle_sdk::{Model, Tensor};

pub const MODEL: &str = "ppocr-det";
const LIMIT_SIDE: f32 = 736.0;
const THRESHOLD: f32 = 0.3;
const BOX_THRESHOLD: f32 = 0.5;
const UNCLIP_RATIO: f32 = 1.6;
const MIN_SIZE: f32 = 3.0;
const MAX_CANDIDATES: usize = 1000;

/// A text box in image coordinates: top-left, top-right, bottom-right, bottom-left.
#[derive(Clone, Copy, Debug)]
pub struct TextBox {
    pub corners: [Point; 4],
}

/// The text boxes in `image`, top to bottom and left to right.
pub fn detect(image: &Rgb) -> Result<Vec<TextBox>, crate::Failure> {
    const OUTPUT: &str = "sigmoid_0.tmp_0";
    let ratio = if (image.width.min(image.height) as f32) < LIMIT_SIDE { LIMIT_SIDE / image.width.min(image.height) as f32 } else { 1.0 };
    let to_32 = |side: usize| ((((side as f32 * ratio) as usize) as f32 / 32.0).round() as usize * 32).max(32);
    let (width, height) = (to_32(image.width), to_32(image.height));
    let resized = image.resize(width, height);
    let mut chw = vec![0f32; 3 * width * height];
    // The models were trained on OpenCV's BGR order.
    for (i, pixel) in resized.pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * width * height + i] = f32::from(pixel[2 - c]) / 255.0 * 2.0 - 1.0;
        }
    }
    let failed = |e: spindle_sdk::Error| match e.kind() {
        spindle_sdk::ErrorKind::InvalidInput => (413, format!("the image is too large to read: {e}")),
        _ => (500, e.to_string()),
    };
    let model = Model::open(MODEL).map_err(failed)?;
    let outputs = model.run(&[("x", Tensor::from_f32(&[1, 3, height, width], &chw).map_err(failed)?)]).map_err(failed)?;
    let map = outputs.get(OUTPUT).and_then(spindle_sdk::Tensor::to_f32).map_err(failed)?;
    if map.len() != width * height {
        return Err((500, format!("the detector answered {} values for a {width}×{height} map", map.len())));
    }
    let mut boxes = boxes_from_map(&map, width, height, image.width, image.height);
    sort_reading_order(&mut boxes);
    Ok(boxes)
}

fn boxes_from_map(map: &[f32], width: usize, height: usize, dest_width: usize, dest_height: usize) -> Vec<TextBox> {
    let on = |x: usize, y: usize| map[y * width + x] > THRESHOLD;
    // Dilation by a 2×2 kernel anchored at its centre: a pixel is set if it or its left, upper or
    // upper-left neighbour is.
    let mask: Vec<bool> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .map(|(x, y)| on(x, y) || (x > 0 && on(x - 1, y)) || (y > 0 && on(x, y - 1)) || (x > 0 && y > 0 && on(x - 1, y - 1)))
        .collect();
    let mut seen = vec![false; width * height];
    let mut found = Vec::new();
    let mut stack = Vec::new();
    let mut regions = 0;
    for start in 0..width * height {
        if !mask[start] || seen[start] || regions >= MAX_CANDIDATES {
            continue;
        }
        regions += 1;
        seen[start] = true;
        stack.push(start);
        let mut region: Vec<Point> = Vec::new();
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            region.push([x as f32, y as f32]);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= width as i64 || ny >= height as i64 {
                        continue;
                    }
                    let j = ny as usize * width + nx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let (corners, side) = mini_box(min_area_rect(&convex_hull(region)));
        if side < MIN_SIZE || score(map, width, height, &corners) < BOX_THRESHOLD {
            continue;
        }
        let (area, perimeter) = area_and_perimeter(&corners);
        let (grown, side) = mini_box(grow(corners, area * UNCLIP_RATIO / perimeter.max(f32::EPSILON)));
        if side < MIN_SIZE + 2.0 {
            continue;
        }
        let scale = |p: Point| {
            [
                (p[0] / width as f32 * dest_width as f32).round().clamp(0.0, dest_width as f32),
                (p[1] / height as f32 * dest_height as f32).round().clamp(0.0, dest_height as f32),
            ]
        };
        let corners = order_clockwise(grown.map(scale))
            .map(|p| [p[0].min(dest_width as f32 - 1.0).floor(), p[1].min(dest_height as f32 - 1.0).floor()]);
        let (w, h) = (crate::geometry::distance(corners[0], corners[1]), crate::geometry::distance(corners[0], corners[3]));
        if w as i64 <= 3 || h as i64 <= 3 {
            continue;
        }
        found.push(TextBox { corners });
    }
    found
}

/// The mean text score inside a box (over the pixels of its bounding rectangle that lie in it).
fn score(map: &[f32], width: usize, height: usize, corners: &[Point; 4]) -> f32 {
    let x_min = corners.iter().map(|p| p[0]).fold(f32::MAX, f32::min).floor().clamp(0.0, width as f32 - 1.0) as usize;
    let x_max = corners.iter().map(|p| p[0]).fold(f32::MIN, f32::max).ceil().clamp(0.0, width as f32 - 1.0) as usize;
    let y_min = corners.iter().map(|p| p[1]).fold(f32::MAX, f32::min).floor().clamp(0.0, height as f32 - 1.0) as usize;
    let y_max = corners.iter().map(|p| p[1]).fold(f32::MIN, f32::max).ceil().clamp(0.0, height as f32 - 1.0) as usize;
    let (mut sum, mut count) = (0.0, 0usize);
    for y in y_min..=y_max {
        for x in x_min..=x_max {
            if inside(corners, [x as f32, y as f32]) {
                sum += map[y * width + x];
                count += 1;
            }
        }
    }
    if count == 0 { 0.0 } else { sum / count as f32 }
}

/// Top-left, top-right, bottom-right, bottom-left, by x then y.
fn order_clockwise(points: [Point; 4]) -> [Point; 4] {
    let mut by_x = points;
    by_x.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (mut left, mut right) = ([by_x[0], by_x[1]], [by_x[2], by_x[3]]);
    left.sort_by(|a, b| a[1].total_cmp(&b[1]));
    right.sort_by(|a, b| a[1].total_cmp(&b[1]));
    [left[0], right[0], right[1], left[1]]
}

/// Top to bottom by the top-left corner, then left to right among boxes within 10 pixels of
/// each other vertically.
fn sort_reading_order(boxes: &mut [TextBox]) {
    boxes.sort_by(|a, b| a.corners[0][1].total_cmp(&b.corners[0][1]).then(a.corners[0][0].total_cmp(&b.corners[0][0])));
    for i in 0..boxes.len().saturating_sub(1) {
        for j in (0..=i).rev() {
            let (upper, lower) = (boxes[j].corners[0], boxes[j + 1].corners[0]);
            if (lower[1] - upper[1]).abs() < 10.0 && lower[0] < upper[0] {
                boxes.swap(j, j + 1);
            } else {
                break;
            }
        }
    }
}
