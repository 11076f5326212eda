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
use image::{DynamicImage, ImageDecoder, RgbImage};
use rand::Rng;

/// The image file extensions and WebDataset members realsyn reads, in order of
/// preference (open_clip's `jpg;png;jpeg;webp` first, then what the builder and
/// ImageFolder datasets also hold). One list for every reader.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "png", "jpeg", "webp", "bmp", "gif", "tif", "tiff"];

/// OpenAI CLIP's normalisation constants (open_clip `OPENAI_DATASET_MEAN/STD`).
pub const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Decode JPEG/PNG/WebP/... bytes (the format sniffed from the content), with the one
/// rule every reader of realsyn applies (builder, training loader, `embed`, eval): a
/// JPEG without its end-of-image marker is truncated and refused, as PIL refuses it
/// ("image file is truncated"), where the decoder would fill the missing rows with
/// grey. `Err` is the reason.
pub fn decode_checked(bytes: &[u8]) -> Result<DynamicImage, &'static str> {
    DynamicImage::from_decoder(checked_decoder(bytes)?).map_err(decode_error)
}

/// [`decode_checked`] into `buf`, a buffer the caller keeps across images, as 8-bit
/// RGB; returns the width and height (the first `3 * w * h` bytes of `buf`). Images
/// already RGB8 (every colour JPEG) are decoded in place: no allocation, and none of
/// the page faults a fresh multi-megabyte buffer costs per photo.
pub fn decode_rgb8_into(bytes: &[u8], buf: &mut Vec<u8>) -> Result<(u32, u32), &'static str> {
    let decoder = checked_decoder(bytes)?;
    let (w, h) = decoder.dimensions();
    let n = 3 * w as usize * h as usize;
    if decoder.color_type() == image::ColorType::Rgb8 {
        if buf.len() < n {
            buf.resize(n, 0);
        }
        // Zeroed first, as a fresh buffer is: a decoder may leave the rows of a
        // damaged image unwritten (zune-jpeg does; found by fuzzing), and the last
        // image's pixels must not show through. A memset of pages already mapped
        // costs a fraction of the faults it replaces.
        buf[..n].fill(0);
        decoder.read_image(&mut buf[..n]).map_err(decode_error)?;
    } else {
        let rgb = DynamicImage::from_decoder(decoder)
            .map_err(decode_error)?
            .into_rgb8();
        buf.clear();
        buf.extend_from_slice(rgb.as_raw());
    }
    Ok((w, h))
}

/// The largest decode buffer a thread keeps between images (a 4096 x 4096 photo);
/// a bigger one is freed after its image.
const KEEP_DECODE_BUFFER: usize = 3 * 4096 * 4096;

/// [`decode_rgb8_into`] a buffer the calling thread keeps across images (as each of
/// the training loader's decode threads does), then `use_pixels(raw, w, h)`.
pub fn with_decoded_rgb8<R>(
    bytes: &[u8],
    use_pixels: impl FnOnce(&[u8], u32, u32) -> R,
) -> Result<R, &'static str> {
    thread_local!(static DECODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
    DECODED.with_borrow_mut(|buf| {
        let (w, h) = decode_rgb8_into(bytes, buf)?;
        let out = use_pixels(&buf[..3 * w as usize * h as usize], w, h);
        if buf.capacity() > KEEP_DECODE_BUFFER {
            *buf = Vec::new();
        }
        Ok(out)
    })
}

/// The decoder for `bytes`, after the checks every reader applies: a JPEG without
/// its end-of-image marker is truncated, and the header's size is checked against
/// the pixel limit before anything is allocated.
fn checked_decoder(bytes: &[u8]) -> Result<Box<dyn ImageDecoder + '_>, &'static str> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        // Entropy-coded data never holds FF D9 (0xFF is stuffed as FF 00), so an
        // FF D9 after the first start-of-scan is the end-of-image marker (searched
        // from the end, where a whole file has it).
        let sos = memchr::memmem::find(bytes, &[0xFF, 0xDA]);
        let eoi = sos.is_some_and(|s| memchr::memmem::rfind(&bytes[s..], &[0xFF, 0xD9]).is_some());
        if !eoi {
            return Err("truncated jpeg");
        }
    }
    let decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| "unreadable image")?
        .into_decoder()
        .map_err(decode_error)?;
    // A small file that expands to gigapixels is refused here, as PIL's
    // DecompressionBombError does.
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > realsyn_io::limits::IMAGE_PIXELS.get() {
        return Err(OVER_PIXEL_LIMIT);
    }
    // The allocation cap `ImageReader::decode` applies (512 MB by default).
    image::Limits::default()
        .reserve(decoder.total_bytes())
        .map_err(decode_error)?;
    Ok(Box::new(decoder))
}

fn decode_error(e: image::ImageError) -> &'static str {
    match e {
        image::ImageError::Limits(_) => OVER_PIXEL_LIMIT,
        _ => "corrupt image data",
    }
}

const OVER_PIXEL_LIMIT: &str = "over the pixel limit (decompression bomb)";

/// `decode_checked` with the reason as an error.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage> {
    decode_checked(bytes).map_err(|r| anyhow!("cannot decode image: {r}"))
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
        Ok(to_normalized_chw(&self.pixels(img)?))
    }

    /// The resized, centre-cropped `size` x `size` pixels, before `ToTensor`.
    pub fn pixels(&self, img: &DynamicImage) -> Result<RgbImage> {
        let mut owned = None;
        let rgb = as_rgb8(img, &mut owned);
        let resized = resize_shorter_side(rgb, self.size)?;
        Ok(center_crop(&resized, self.size))
    }
}

/// open_clip's train transform: torchvision `RandomResizedCrop(size, scale,
/// ratio=(3/4, 4/3), BICUBIC)`, then RGB, `ToTensor`, `Normalize`. The crop box is
/// drawn exactly as torchvision's `get_params` draws it (10 tries, then a centre
/// crop clamped to the ratio range); randomness comes from the caller's seeded RNG.
#[derive(Debug, Clone, Copy)]
pub struct RandomResizedCrop {
    pub size: u32,
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// open_clip's default for CLIP pre-training: scale (0.9, 1.0).
    pub fn new(size: u32) -> Self {
        Self {
            size,
            scale: (0.9, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }

    /// The crop box `(left, top, width, height)` for an image of `w` x `h`.
    pub fn crop_box(&self, w: u32, h: u32, rng: &mut impl Rng) -> (u32, u32, u32, u32) {
        let area = w as f64 * h as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = rng.random_range(lr0..=lr1).exp();
            let cw = (target * aspect).sqrt().round() as i64;
            let ch = (target / aspect).sqrt().round() as i64;
            if cw > 0 && cw <= w as i64 && ch > 0 && ch <= h as i64 {
                let top = rng.random_range(0..=(h as i64 - ch)) as u32;
                let left = rng.random_range(0..=(w as i64 - cw)) as u32;
                return (left, top, cw as u32, ch as u32);
            }
        }
        let in_ratio = w as f64 / h as f64;
        let (cw, ch) = if in_ratio < self.ratio.0 {
            (w, ((w as f64 / self.ratio.0).round() as u32).max(1))
        } else if in_ratio > self.ratio.1 {
            (((h as f64 * self.ratio.1).round() as u32).max(1), h)
        } else {
            (w, h)
        };
        ((w - cw) / 2, (h - ch) / 2, cw, ch)
    }

    /// `[3, size, size]` normalised values.
    pub fn apply(&self, img: &DynamicImage, rng: &mut impl Rng) -> Result<Vec<f32>> {
        Ok(to_normalized_chw(&self.pixels(img, rng)?))
    }

    /// The random crop resized to `size` x `size`, before `ToTensor`.
    pub fn pixels(&self, img: &DynamicImage, rng: &mut impl Rng) -> Result<RgbImage> {
        let mut owned = None;
        let rgb = as_rgb8(img, &mut owned);
        let (w, h) = rgb.dimensions();
        self.pixels_rgb8(rgb.as_raw(), w, h, rng)
    }

    /// [`Self::pixels`] of 8-bit RGB given as raw bytes (`3 * w * h`).
    pub fn pixels_rgb8(&self, raw: &[u8], w: u32, h: u32, rng: &mut impl Rng) -> Result<RgbImage> {
        if w == 0 || h == 0 {
            return Err(anyhow!("image has no pixels"));
        }
        let (left, top, cw, ch) = self.crop_box(w, h, rng);
        resize_region_rgb8(raw, (w, h), (left, top, cw, ch), self.size, self.size)
    }
}

/// The transform a pipeline applies: random crops for training, the
/// deterministic resize + centre crop for evaluation.
#[derive(Debug, Clone, Copy)]
pub enum ImageTransform {
    Train(RandomResizedCrop),
    Eval(EvalTransform),
}

impl ImageTransform {
    pub fn size(&self) -> u32 {
        match self {
            ImageTransform::Train(t) => t.size,
            ImageTransform::Eval(t) => t.size,
        }
    }

    pub fn apply(&self, img: &DynamicImage, rng: &mut impl Rng) -> Result<Vec<f32>> {
        Ok(to_normalized_chw(&self.pixels(img, rng)?))
    }

    /// `size` x `size` RGB pixels; [`normalize_chw_into`] finishes the transform. The
    /// training loader keeps samples as these (a quarter of the f32 size) and
    /// normalises them straight into the batch.
    pub fn pixels(&self, img: &DynamicImage, rng: &mut impl Rng) -> Result<RgbImage> {
        match self {
            ImageTransform::Train(t) => t.pixels(img, rng),
            ImageTransform::Eval(t) => t.pixels(img),
        }
    }

    /// [`Self::pixels`] of 8-bit RGB given as raw bytes (`3 * w * h`), as
    /// [`decode_rgb8_into`] leaves them.
    pub fn pixels_rgb8(&self, raw: &[u8], w: u32, h: u32, rng: &mut impl Rng) -> Result<RgbImage> {
        match self {
            ImageTransform::Train(t) => t.pixels_rgb8(raw, w, h, rng),
            ImageTransform::Eval(t) => {
                let img = RgbImage::from_raw(w, h, raw[..3 * w as usize * h as usize].to_vec())
                    .ok_or_else(|| anyhow!("{w}x{h} image with {} bytes", raw.len()))?;
                t.pixels(&DynamicImage::ImageRgb8(img))
            }
        }
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
    resize_region(img, (0, 0, sw, sh), w, h)
}

/// Bicubic resize of the `(left, top, width, height)` region to `w` x `h`
/// (torchvision's `resized_crop`), without copying the region first.
pub fn resize_region(
    img: &RgbImage,
    region: (u32, u32, u32, u32),
    w: u32,
    h: u32,
) -> Result<RgbImage> {
    resize_region_rgb8(img.as_raw(), img.dimensions(), region, w, h)
}

/// [`resize_region`] of 8-bit RGB given as raw bytes of a `(width, height)` image.
fn resize_region_rgb8(
    raw: &[u8],
    (sw, sh): (u32, u32),
    region: (u32, u32, u32, u32),
    w: u32,
    h: u32,
) -> Result<RgbImage> {
    let raw = &raw[..3 * sw as usize * sh as usize];
    let (left, top, cw, ch) = region;
    if (left, top, cw, ch, w, h) == (0, 0, sw, sh, sw, sh) {
        return RgbImage::from_raw(sw, sh, raw.to_vec()).ok_or_else(|| anyhow!("short buffer"));
    }
    let src = fast_image_resize::images::ImageRef::new(sw, sh, raw, PixelType::U8x3)?;
    let mut dst = Image::new(w, h, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
        .crop(left as f64, top as f64, cw as f64, ch as f64);
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

/// The image as RGB8, borrowed when it already is (JPEGs decode to RGB8), else
/// converted into `owned` (RGB conversion as `_convert_to_rgb` does).
fn as_rgb8<'a>(img: &'a DynamicImage, owned: &'a mut Option<RgbImage>) -> &'a RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => owned.insert(other.to_rgb8()),
    }
}

/// `ToTensor` + `Normalize`, in the same f32 operations torchvision performs; the
/// 256 possible values per channel are computed once (identical results).
pub fn to_normalized_chw(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let mut out = vec![0f32; 3 * (w * h) as usize];
    normalize_chw_into(img, &mut out);
    out
}

/// [`to_normalized_chw`] into `out` (`3 * width * height` values), e.g. a sample's
/// slot of a batch buffer.
pub fn normalize_chw_into(img: &RgbImage, out: &mut [f32]) {
    static LUT: std::sync::OnceLock<[[f32; 256]; 3]> = std::sync::OnceLock::new();
    let lut = LUT.get_or_init(|| {
        std::array::from_fn(|c| {
            std::array::from_fn(|v| (v as f32 / 255.0 - OPENAI_MEAN[c]) / OPENAI_STD[c])
        })
    });
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    assert_eq!(out.len(), 3 * plane, "output is not 3 x {w} x {h}");
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        r[i] = lut[0][px[0] as usize];
        g[i] = lut[1][px[1] as usize];
        b[i] = lut[2][px[2] as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid 20,000 x 20,000 grey PNG of a few hundred kilobytes: every row is
    /// zeros, which deflate shrinks ~1000-fold (a decompression bomb).
    fn png_bomb() -> Vec<u8> {
        use std::io::Write;
        let (w, h) = (20_000u32, 20_000u32);
        let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
            out.extend((data.len() as u32).to_be_bytes());
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            out.extend(kind);
            out.extend(data);
            out.extend(crc.sum().to_be_bytes());
        };
        let mut ihdr = Vec::new();
        ihdr.extend(w.to_be_bytes());
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]); // 8-bit greyscale
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let row = vec![0u8; w as usize + 1];
        for _ in 0..h {
            z.write_all(&row).unwrap();
        }
        let idat = z.finish().unwrap();
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &idat);
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn decompression_bombs_are_named_and_refused_before_decoding() {
        let bomb = png_bomb();
        assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
        let t = std::time::Instant::now();
        assert_eq!(
            decode_checked(&bomb).unwrap_err(),
            "over the pixel limit (decompression bomb)"
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "decoded first"
        );
    }

    #[test]
    fn truncated_jpegs_are_refused_whole_ones_decode() {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 7]));
        let mut jpg = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut jpg, image::ImageFormat::Jpeg)
            .unwrap();
        let jpg = jpg.into_inner();
        assert_eq!(decode_checked(&jpg).unwrap().width(), 64);
        // Cut after the start of scan: the decoder alone would return grey rows.
        let cut = &jpg[..jpg.len() - 40];
        assert!(
            image::load_from_memory(cut).is_ok(),
            "the plain decoder accepts it"
        );
        assert_eq!(decode_checked(cut).err(), Some("truncated jpeg"));
        assert!(decode_image(cut).is_err());
    }

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
    fn random_resized_crop_boxes_stay_inside_and_cover_90_percent() {
        use rand::SeedableRng;
        let t = RandomResizedCrop::new(224);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (w, h) in [(640, 480), (224, 224), (50, 900), (31, 29)] {
            for _ in 0..200 {
                let (l, tp, cw, ch) = t.crop_box(w, h, &mut rng);
                assert!(l + cw <= w && tp + ch <= h && cw > 0 && ch > 0);
                if w as f64 / h as f64 > 0.75 && (w as f64 / h as f64) < 4.0 / 3.0 {
                    // within the ratio range the area is >= 90% (up to rounding)
                    assert!(
                        (cw * ch) as f64 >= 0.9 * (w * h) as f64 * 0.97,
                        "{w}x{h} {cw}x{ch}"
                    );
                }
            }
        }
        // Very elongated images always fall back to a ratio-clamped centre crop.
        assert_eq!(t.crop_box(50, 900, &mut rng), (0, 416, 50, 67));
        let img = DynamicImage::ImageRgb8(RgbImage::new(300, 200));
        assert_eq!(t.apply(&img, &mut rng).unwrap().len(), 3 * 224 * 224);
    }

    #[test]
    fn decoding_into_a_reused_buffer_gives_the_same_pixels_and_crops() {
        use rand::SeedableRng;
        let encode = |img: DynamicImage, format| {
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, format).unwrap();
            out.into_inner()
        };
        let rgb = RgbImage::from_fn(300, 200, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let grey = DynamicImage::ImageRgb8(rgb.clone()).into_luma8();
        let rgba = DynamicImage::ImageRgb8(rgb.clone()).into_rgba8();
        // Largest first: later images use only the front of the grown buffer.
        let files = [
            encode(DynamicImage::ImageRgb8(rgb), image::ImageFormat::Jpeg),
            encode(DynamicImage::ImageLuma8(grey), image::ImageFormat::Png),
            encode(DynamicImage::ImageRgba8(rgba), image::ImageFormat::Png),
        ];
        let transform = ImageTransform::Train(RandomResizedCrop::new(64));
        let mut buf = Vec::new();
        for (i, bytes) in files.iter().enumerate() {
            let img = decode_checked(bytes).unwrap();
            let (w, h) = decode_rgb8_into(bytes, &mut buf).unwrap();
            assert_eq!((w, h), (img.width(), img.height()), "file {i}");
            assert_eq!(
                &buf[..3 * (w * h) as usize],
                img.to_rgb8().as_raw(),
                "file {i}"
            );
            let rng = || rand::rngs::StdRng::seed_from_u64(i as u64);
            let expected = transform.apply(&img, &mut rng()).unwrap();
            let mut got = vec![f32::NAN; 3 * 64 * 64];
            normalize_chw_into(
                &transform.pixels_rgb8(&buf, w, h, &mut rng()).unwrap(),
                &mut got,
            );
            assert_eq!(got, expected, "file {i}");
        }
        let cut = &files[0][..files[0].len() - 40];
        assert_eq!(decode_rgb8_into(cut, &mut buf), Err("truncated jpeg"));
    }

    #[test]
    fn a_reused_buffer_never_shows_through_rows_a_decoder_leaves_unwritten() {
        // Found by the image fuzz target: zune-jpeg leaves the rows of this damaged
        // JPEG that it cannot decode untouched, relying on a zeroed buffer.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../realsyn-fuzz/corpus/image/jpeg-rows-left-unwritten.jpg"
        );
        let bytes = std::fs::read(path).unwrap();
        let expected = decode_checked(&bytes).unwrap().to_rgb8();
        let mut buf = vec![0xAA; 1 << 20];
        let (w, h) = decode_rgb8_into(&bytes, &mut buf).unwrap();
        let differ = buf[..3 * (w * h) as usize]
            .iter()
            .zip(expected.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differ, 0, "{differ} of {w}x{h}x3 bytes differ");
    }

    #[test]
    fn garbage_bytes_are_an_error_not_a_panic() {
        assert!(decode_image(b"\xff\xd8\xff\xe0 definitely not a jpeg").is_err());
    }
}
