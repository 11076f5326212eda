//! The RealSyn dataset as files (paper Table 13): what the `write` stage puts in
//! each WebDataset sample, how images are (optionally) resized, which variants a
//! store can write, and parquet tables (img2dataset's per-shard metadata and the
//! released RealSyn parquet, `raw_image_url, text1, text2, text3, syn_text`).
//!
//! The layout is img2dataset's `--output_format webdataset`, which open_clip's
//! training loader reads: `{00000..N}.tar` holding `KEY.jpg`, `KEY.txt` (text1) and
//! `KEY.json`, with `NNNNN.parquet` and `NNNNN_stats.json` beside every tar and a
//! `sizes.json` for the whole folder. Keys are img2dataset's: the shard number in 5
//! digits, then the sample's index in the shard (4 digits, more when shards hold
//! more than 10,000).

pub mod parquet;
pub mod released;
pub mod sample;
pub mod shard;
pub mod stage;

use anyhow::{Result, bail};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

/// Which samples a dataset folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Variant {
    /// Every paired image (no balance).
    All,
    /// Semantic balance sampling with this per-cluster cap (paper: 20 / 35 / 180).
    Balanced { cap: usize },
    /// The random-sampling baseline of the same size as `Balanced { cap }` (Table 5).
    Random { cap: usize },
}

impl Variant {
    /// Its folder under `STORE/dataset/`.
    pub fn name(&self) -> String {
        match self {
            Variant::All => "all".into(),
            Variant::Balanced { cap } => format!("balanced-{cap}"),
            Variant::Random { cap } => format!("random-{cap}"),
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for Variant {
    type Err = anyhow::Error;

    /// `all`, `balanced-CAP` or `random-CAP`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s == "all" {
            return Ok(Variant::All);
        }
        let cap = |rest: &str| -> Result<usize> {
            match rest.parse::<usize>() {
                Ok(c) if c > 0 => Ok(c),
                _ => bail!("variant {s:?}: the cap must be a positive number"),
            }
        };
        if let Some(rest) = s.strip_prefix("balanced-") {
            return Ok(Variant::Balanced { cap: cap(rest)? });
        }
        if let Some(rest) = s.strip_prefix("random-") {
            return Ok(Variant::Random { cap: cap(rest)? });
        }
        bail!("variant {s:?}: all, balanced-CAP (e.g. balanced-20) or random-CAP")
    }
}

/// img2dataset's resize modes that a CLIP dataset uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// The shorter side becomes `size`, the aspect ratio kept.
    KeepRatio,
    /// `keep_ratio`, then the centre `size` x `size` square.
    CenterCrop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    pub size: u32,
    pub mode: ResizeMode,
    /// Leave images whose shorter side is already at most `size` alone
    /// (img2dataset's `--resize_only_if_bigger`).
    pub only_if_bigger: bool,
}

impl std::str::FromStr for Resize {
    type Err = anyhow::Error;

    /// `SIZE`, `SIZE:keep_ratio`, `SIZE:center_crop`, optionally `+only_if_bigger`.
    fn from_str(s: &str) -> Result<Self> {
        let (s, only_if_bigger) = match s.strip_suffix("+only_if_bigger") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let (size, mode) = s.split_once(':').unwrap_or((s, "keep_ratio"));
        let size: u32 = match size.parse() {
            Ok(n) if n > 0 => n,
            _ => bail!(
                "resize {s:?}: SIZE[:keep_ratio|center_crop][+only_if_bigger], e.g. 256:center_crop"
            ),
        };
        let mode = match mode {
            "keep_ratio" => ResizeMode::KeepRatio,
            "center_crop" => ResizeMode::CenterCrop,
            m => bail!("resize mode {m:?}: keep_ratio or center_crop"),
        };
        Ok(Resize {
            size,
            mode,
            only_if_bigger,
        })
    }
}

/// img2dataset's `NNNNN_stats.json` (without times, so a rerun writes the same),
/// for the `write` stage's shards and the released parquet's downloads.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShardStats {
    pub count: usize,
    pub successes: usize,
    pub failed_to_download: usize,
    pub failed_to_resize: usize,
    pub status_dict: std::collections::BTreeMap<String, usize>,
    /// The variant a `write` shard belongs to (none for downloads).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// What one image becomes in the dataset: JPEG bytes and their size.
pub struct Encoded {
    pub jpg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The decoded original's size.
    pub original: (u32, u32),
}

/// Whether these bytes are a JPEG (kept as they are when nothing is resized).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xff, 0xd8, 0xff])
}

/// The image as the dataset stores it: the original bytes when they are a JPEG
/// and nothing is resized, else decoded, resized (Lanczos3; img2dataset uses
/// OpenCV's area / Lanczos4) and encoded as JPEG at `quality`.
pub fn encode(bytes: &[u8], resize: Option<Resize>, quality: u8) -> Result<Encoded, &'static str> {
    let img = realsyn_data::image::decode_checked(bytes)?;
    let (w, h) = (img.width(), img.height());
    let resized = resize.and_then(|r| resized(&img, r));
    if resized.is_none() && is_jpeg(bytes) {
        return Ok(Encoded {
            jpg: bytes.to_vec(),
            width: w,
            height: h,
            original: (w, h),
        });
    }
    let img = resized.unwrap_or(img).to_rgb8();
    let mut jpg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, quality)
        .encode_image(&img)
        .map_err(|_| "image could not be encoded as JPEG")?;
    Ok(Encoded {
        jpg,
        width: img.width(),
        height: img.height(),
        original: (w, h),
    })
}

/// The resized image, or `None` when `r` leaves it as it is.
fn resized(img: &DynamicImage, r: Resize) -> Option<DynamicImage> {
    let (w, h) = (img.width(), img.height());
    let short = w.min(h);
    if r.only_if_bigger && short <= r.size {
        return None;
    }
    let scaled = |long: u32| ((long as f64 * r.size as f64 / short as f64).round() as u32).max(1);
    let (nw, nh) = if w <= h {
        (r.size, scaled(h))
    } else {
        (scaled(w), r.size)
    };
    let img = img.resize_exact(nw, nh, image::imageops::FilterType::Lanczos3);
    Some(match r.mode {
        ResizeMode::KeepRatio => img,
        ResizeMode::CenterCrop => {
            let (x, y) = ((nw - r.size) / 2, (nh - r.size) / 2);
            img.crop_imm(x, y, r.size, r.size)
        }
    })
}

/// img2dataset's key: 5-digit shard number, then the index in the shard in as many
/// digits as `samples_per_shard - 1` needs (at least 4).
pub fn sample_key(shard: usize, index: usize, samples_per_shard: usize) -> String {
    let digits = samples_per_shard
        .saturating_sub(1)
        .max(1)
        .to_string()
        .len()
        .max(4);
    format!("{shard:05}{index:0digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse() {
        for v in [
            Variant::All,
            Variant::Balanced { cap: 20 },
            Variant::Random { cap: 180 },
        ] {
            assert_eq!(v.name().parse::<Variant>().unwrap(), v);
        }
        assert!("balanced-0".parse::<Variant>().is_err());
        assert!("balanced".parse::<Variant>().is_err());
    }

    #[test]
    fn keys_are_img2dataset_keys() {
        assert_eq!(sample_key(3, 7, 10_000), "000030007");
        assert_eq!(sample_key(3, 7, 100), "000030007");
        assert_eq!(sample_key(3, 7, 100_000), "0000300007");
    }

    #[test]
    fn resize_modes() {
        let img = DynamicImage::new_rgb8(400, 200);
        let r: Resize = "100:center_crop".parse().unwrap();
        let out = resized(&img, r).unwrap();
        assert_eq!((out.width(), out.height()), (100, 100));
        let r: Resize = "100".parse().unwrap();
        let out = resized(&img, r).unwrap();
        assert_eq!((out.width(), out.height()), (200, 100));
        let r: Resize = "300+only_if_bigger".parse().unwrap();
        assert!(resized(&img, r).is_none());
    }
}
