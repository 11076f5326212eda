//! Image decoding and CLIP's eval transform, as open_clip builds it with torchvision:
//! `Resize(size, BICUBIC)` of the shorter side, `CenterCrop(size)`, RGB,
//! `ToTensor`, `Normalize(OPENAI_MEAN, OPENAI_STD)`.
//!
//! Resizing uses `fast_image_resize`'s Catmull-Rom convolution (cubic, a = -0.5,
//! antialiased when shrinking), the same filter as Pillow's BICUBIC. An input already
//! at the target size is not resampled, as in torchvision, so those outputs are
//! bit-identical to open_clip's preprocessing.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image};
use image::{DynamicImage, RgbImage};

/// OpenAI CLIP's normalisation constants (open_clip `OPENAI_DATASET_MEAN/STD`).
pub const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Decode JPEG/PNG/WebP/... bytes; the format is sniffed from the content.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage> {
    image::load_from_memory(bytes).map_err(|e| anyhow!("cannot decode image: {e}"))
}

pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode_image(&bytes).with_context(|| path.display().to_string())
}

/// Resize + centre crop + normalise to a CHW f32 tensor.
#[derive(Debug, Clone, Copy)]
pub struct EvalTransform {
    pub size: u32,
}

impl EvalTransform {
    pub fn new(size: u32) -> Self {
        Self { size }
    }

    /// `[3, size, size]` values, channel-major, normalised.
    pub fn apply(&self, img: &DynamicImage) -> Result<Vec<f32>> {
        let rgb = img.to_rgb8();
        let resized = resize_shorter_side(&rgb, self.size)?;
        let cropped = center_crop(&resized, self.size);
        Ok(to_normalized_chw(&cropped))
    }
}

/// torchvision `Resize(int)`: the shorter side becomes `size`, the longer
/// `int(size * long / short)`.
pub fn resize_shorter_side(img: &RgbImage, size: u32) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(anyhow!("image has no pixels"));
    }
    let (nw, nh) = if w <= h {
        (size, (size as u64 * h as u64 / w as u64) as u32)
    } else {
        ((size as u64 * w as u64 / h as u64) as u32, size)
    };
    if (nw, nh) == (w, h) {
        return Ok(img.clone());
    }
    resize(img, nw, nh)
}

/// Bicubic (Catmull-Rom) resize to exactly `w` x `h`.
pub fn resize(img: &RgbImage, w: u32, h: u32) -> Result<RgbImage> {
    let (sw, sh) = img.dimensions();
    let src = Image::from_vec_u8(sw, sh, img.as_raw().clone(), PixelType::U8x3)?;
    let mut dst = Image::new(w, h, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
    Resizer::new().resize(&src, &mut dst, &options)?;
    RgbImage::from_raw(w, h, dst.into_vec())
        .ok_or_else(|| anyhow!("resize produced a wrong-sized buffer"))
}

/// Python's `round` (half to even), which torchvision's `center_crop` uses.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// torchvision `CenterCrop(size)`; pads with black where the image is smaller.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let top = round_half_even((h as f64 - size as f64) / 2.0);
    let left = round_half_even((w as f64 - size as f64) / 2.0);
    RgbImage::from_fn(size, size, |x, y| {
        let (sx, sy) = (x as i64 + left, y as i64 + top);
        if sx >= 0 && sy >= 0 && (sx as u32) < w && (sy as u32) < h {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// `ToTensor` + `Normalize`, in the same f32 operations torchvision performs.
pub fn to_normalized_chw(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - OPENAI_MEAN[c]) / OPENAI_STD[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_aspect_and_crops_centre() {
        let img = RgbImage::from_fn(300, 200, |x, _| image::Rgb([(x % 256) as u8, 0, 0]));
        let r = resize_shorter_side(&img, 100).unwrap();
        assert_eq!(r.dimensions(), (150, 100));
        let c = center_crop(&r, 100);
        assert_eq!(c.dimensions(), (100, 100));
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(-0.5), 0);
    }

    #[test]
    fn same_size_input_is_not_resampled() {
        let img = RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 7]));
        let t = EvalTransform::new(8)
            .apply(&DynamicImage::ImageRgb8(img.clone()))
            .unwrap();
        let expected = (img.get_pixel(3, 2)[0] as f32 / 255.0 - OPENAI_MEAN[0]) / OPENAI_STD[0];
        assert_eq!(t[2 * 8 + 3], expected);
    }

    #[test]
    fn garbage_bytes_are_an_error_not_a_panic() {
        assert!(decode_image(b"\xff\xd8\xff\xe0 definitely not a jpeg").is_err());
    }
}
