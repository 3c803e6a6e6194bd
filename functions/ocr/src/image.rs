//! An RGB image in memory, and the three things the pipeline does to one: resize, crop a
//! rotated quadrilateral upright, and turn it a quarter.

use crate::geometry::{Point, distance};

/// Row-major RGB, one byte per channel.
#[derive(Clone)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Rgb {
    /// A PNG or JPEG, decoded (at most 8192 pixels a side).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (width, height, pixels) = spindle_sdk::image::decode_rgb_native(bytes)?;
        Ok(Self { width: width as usize, height: height as usize, pixels })
    }

    /// Resized (bilinear).
    pub fn resize(&self, width: usize, height: usize) -> Rgb {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let source = image::RgbImage::from_raw(self.width as u32, self.height as u32, self.pixels.clone()).expect("pixels of its size");
        let resized = image::imageops::resize(&source, width as u32, height as u32, image::imageops::FilterType::Triangle);
        Rgb { width, height, pixels: resized.into_raw() }
    }

    fn at(&self, x: f32, y: f32) -> [f32; 3] {
        // Bilinear, edges repeated.
        let x = x.clamp(0.0, self.width as f32 - 1.0);
        let y = y.clamp(0.0, self.height as f32 - 1.0);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let p = |x: usize, y: usize, c: usize| f32::from(self.pixels[(y * self.width + x) * 3 + c]);
        std::array::from_fn(|c| {
            let top = p(x0, y0, c) * (1.0 - fx) + p(x1, y0, c) * fx;
            let bottom = p(x0, y1, c) * (1.0 - fx) + p(x1, y1, c) * fx;
            top * (1.0 - fy) + bottom * fy
        })
    }

    /// The quadrilateral `corners` (top-left, top-right, bottom-right, bottom-left) as an upright
    /// image as wide as its longer horizontal edge and as tall as its longer vertical one; turned
    /// a quarter anticlockwise when it is at least 1.5 times taller than wide (vertical text).
    pub fn crop(&self, corners: &[Point; 4]) -> Rgb {
        let width = distance(corners[0], corners[1]).max(distance(corners[2], corners[3])).max(1.0) as usize;
        let height = distance(corners[0], corners[3]).max(distance(corners[1], corners[2])).max(1.0) as usize;
        let mut pixels = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            let v = y as f32 / height as f32;
            for x in 0..width {
                let u = x as f32 / width as f32;
                let point = |axis: usize| {
                    corners[0][axis] * (1.0 - u) * (1.0 - v)
                        + corners[1][axis] * u * (1.0 - v)
                        + corners[2][axis] * u * v
                        + corners[3][axis] * (1.0 - u) * v
                };
                pixels.extend(self.at(point(0), point(1)).map(|c| c.round().clamp(0.0, 255.0) as u8));
            }
        }
        let upright = Rgb { width, height, pixels };
        if height as f32 / width as f32 >= 1.5 { upright.quarter_turn() } else { upright }
    }

    /// With `rows` black rows added above and below.
    pub fn letterbox(&self, rows: usize) -> Rgb {
        let border = vec![0u8; rows * self.width * 3];
        let pixels = [border.as_slice(), &self.pixels, &border].concat();
        Rgb { width: self.width, height: self.height + 2 * rows, pixels }
    }

    /// Turned 90° anticlockwise.
    fn quarter_turn(&self) -> Rgb {
        let (width, height) = (self.height, self.width);
        let mut pixels = vec![0u8; self.pixels.len()];
        for y in 0..height {
            for x in 0..width {
                let (sx, sy) = (self.width - 1 - y, x);
                let from = (sy * self.width + sx) * 3;
                pixels[(y * width + x) * 3..][..3].copy_from_slice(&self.pixels[from..from + 3]);
            }
        }
        Rgb { width, height, pixels }
    }
}
