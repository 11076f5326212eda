//! Image checks of the extraction stage: read the bytes, read the size from the
//! header only (no decode), drop by size and aspect ratio (paper: shorter side < 100
//! px, aspect ratio outside [1/3, 3]), then decode once for the perceptual hash.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

pub const MIN_SIDE: u32 = 100;
pub const MAX_ASPECT: f64 = 3.0;

/// Why an image is dropped by the size/aspect rule, if it is.
pub fn size_violation(width: u32, height: u32) -> Option<&'static str> {
    if width.min(height) < MIN_SIDE {
        return Some("shorter side < 100 px");
    }
    let aspect = width as f64 / height as f64;
    if !(1.0 / MAX_ASPECT..=MAX_ASPECT).contains(&aspect) {
        return Some("aspect ratio outside [1/3, 3]");
    }
    None
}

/// Format and size from the header; `Err` is a drop reason.
pub fn header(bytes: &[u8]) -> Result<(ImageFormat, u32, u32), &'static str> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| "unreadable image")?;
    let format = reader.format().ok_or("unknown image format")?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|_| "corrupt image header")?;
    Ok((format, w, h))
}

/// Decode the pixels with the rule every reader shares
/// (`realsyn_data::image::decode_checked`: a truncated JPEG is refused).
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, &'static str> {
    realsyn_data::image::decode_checked(bytes)
}

/// File extension for a format, as WebDataset keys use it.
pub fn extension(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpg",
        ImageFormat::Png => "png",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        ImageFormat::Bmp => "bmp",
        ImageFormat::Tiff => "tiff",
        _ => "bin",
    }
}

/// The perceptual hash of `imagehash.phash` (64 bits): grayscale, resize to 32x32,
/// 2-d DCT-II, the top-left 8x8 coefficients, each bit = coefficient > their median.
pub fn phash(img: &DynamicImage) -> u64 {
    const N: usize = 32;
    // PIL's convert("L") (ITU-R 601-2 luma, what imagehash sees), not image's
    // Rec. 709 `grayscale()`.
    let rgb = img.to_rgb8();
    let luma = image::GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        image::Luma([((r as u32 * 299 + g as u32 * 587 + b as u32 * 114 + 500) / 1000) as u8])
    });
    let small = image::imageops::resize(
        &luma,
        N as u32,
        N as u32,
        image::imageops::FilterType::Lanczos3,
    );
    let px: Vec<f64> = small.pixels().map(|p| p.0[0] as f64).collect();
    // DCT-II along rows then columns (unnormalised, as scipy.fftpack.dct: the scale
    // does not change which coefficients exceed the median).
    let cos: Vec<f64> = (0..8 * N)
        .map(|i| {
            let (k, n) = (i / N, i % N);
            (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2 * N) as f64).cos()
        })
        .collect();
    let mut rows = vec![0.0; N * 8]; // [row][k]
    for r in 0..N {
        for k in 0..8 {
            rows[r * 8 + k] = (0..N).map(|n| px[r * N + n] * cos[k * N + n]).sum();
        }
    }
    let mut coef = [0.0f64; 64];
    for k1 in 0..8 {
        for k2 in 0..8 {
            coef[k1 * 8 + k2] = (0..N).map(|r| rows[r * 8 + k2] * cos[k1 * N + r]).sum();
        }
    }
    let mut sorted = coef;
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    coef.iter().enumerate().fold(
        0u64,
        |h, (i, &c)| if c > median { h | (1 << (63 - i)) } else { h },
    )
}

/// Content address: the first 16 bytes of SHA-256, hex.
pub fn content_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(bytes);
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_rule() {
        assert_eq!(size_violation(99, 500), Some("shorter side < 100 px"));
        assert_eq!(
            size_violation(301, 100),
            Some("aspect ratio outside [1/3, 3]")
        );
        assert_eq!(size_violation(300, 100), None);
        assert_eq!(size_violation(100, 300), None);
    }

    #[test]
    fn phash_sees_near_duplicates() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(200, 150, |x, y| {
            // Smooth content (photo-like, not an aliasing test pattern).
            let blob = (((x as f32 - 60.0).powi(2) + (y as f32 - 50.0).powi(2)) / 900.0).min(1.0);
            image::Rgb([
                (x * 255 / 200) as u8,
                (y * 255 / 150) as u8,
                (255.0 * blob) as u8,
            ])
        }));
        let h = phash(&img);
        let resized = phash(&img.resize_exact(120, 90, image::imageops::FilterType::Triangle));
        let other = phash(&img.rotate90());
        assert!(
            (h ^ resized).count_ones() <= 4,
            "{}",
            (h ^ resized).count_ones()
        );
        assert!(
            (h ^ other).count_ones() > 16,
            "{}",
            (h ^ other).count_ones()
        );
    }
}
