//! Images in, pixels out: decode a PNG or JPEG of any size, convert it to RGB and resize it.

use image::{ImageFormat, ImageReader, Limits, imageops::FilterType};
use std::io::Cursor;

/// Decoded images wider or taller than this are refused (a decompression-bomb guard).
pub const MAX_SIDE: u32 = 8192;

/// Decodes PNG or JPEG bytes into RGB at the image's own size: `(width, height, pixels)`,
/// row-major, HWC, one byte per channel; alpha is dropped.
pub fn decode_rgb_native(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let rgb = decode(bytes)?;
    let (width, height) = rgb.dimensions();
    Ok((width, height, rgb.into_raw()))
}

/// Decodes PNG or JPEG bytes into `width × height` RGB, row-major, HWC, one byte per channel.
/// Other sizes are resized with a triangle (bilinear) filter; alpha is dropped.
pub fn decode_rgb(bytes: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut rgb = decode(bytes)?;
    if rgb.dimensions() != (width, height) {
        rgb = image::imageops::resize(&rgb, width, height, FilterType::Triangle);
    }
    Ok(rgb.into_raw())
}

fn decode(bytes: &[u8]) -> Result<image::RgbImage, String> {
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| matches!(f, ImageFormat::Png | ImageFormat::Jpeg))
        .ok_or_else(|| "the body is not a PNG or JPEG image".to_owned())?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| format!("could not decode the {format:?} image: {e}"))?;
    Ok(decoded.to_rgb8())
}

/// Scales bytes to floats in [0, 1] (`v / 255`).
pub fn unit_f32(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&v| f32::from(v) / 255.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 8) as u8, (y * 8) as u8, 200]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn same_size_images_are_not_resampled() {
        let pixels = decode_rgb(&png(32, 32), 32, 32).unwrap();
        assert_eq!(pixels.len(), 32 * 32 * 3);
        assert_eq!(&pixels[3 * 33..3 * 34], &[8, 8, 200]);
    }

    #[test]
    fn other_sizes_are_resized_and_garbage_is_refused() {
        assert_eq!(decode_rgb(&png(100, 7), 32, 32).unwrap().len(), 32 * 32 * 3);
        assert!(decode_rgb(b"GIF89a....", 32, 32).unwrap_err().contains("not a PNG or JPEG"));
        let mut truncated = png(32, 32);
        truncated.truncate(40);
        assert!(decode_rgb(&truncated, 32, 32).unwrap_err().contains("could not decode"));
    }
}
