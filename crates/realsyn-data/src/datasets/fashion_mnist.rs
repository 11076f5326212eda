//! Fashion-MNIST (Debian `dataset-fashion-mnist`: 70,000 real 28x28 photos of
//! clothing in 10 classes) as CLIP data:
//!
//! - `OUT/train/`: the 60,000 training images as WebDataset shards in the released
//!   RealSyn layout (`KEY.jpg`, `KEY.txt` = text1, `KEY.json` with `text2`, `text3`,
//!   `syn_text`, and `KEY.cls` for linear probes), each image with 4 captions from
//!   different templates of its class;
//! - `OUT/test/` + `classnames.txt` + `zeroshot_classification_templates.txt`: the
//!   10,000 test images in CLIP_benchmark's layout (`KEY.png`, `KEY.cls`), with
//!   zero-shot templates that never occur in training.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use bytes::Bytes;
use image::{GrayImage, ImageFormat};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;

use super::idx::read_idx;
use crate::wds::ShardWriter;
use realsyn_io::fs::write_atomic;

pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

pub const CLASSNAMES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Caption templates for training; each image gets 4 distinct ones.
pub const TRAIN_TEMPLATES: [&str; 8] = [
    "a photo of a {c}.",
    "a picture of a {c}.",
    "a {c}.",
    "an image showing a {c}.",
    "a grayscale photo of a {c}.",
    "this is a {c}.",
    "a product photo of a {c} on a plain background.",
    "a small {c}.",
];

/// Zero-shot templates for the test set: none appears in `TRAIN_TEMPLATES`.
pub const EVAL_TEMPLATES: [&str; 4] = [
    "a photo of the {c}.",
    "a low resolution photo of a {c}.",
    "a cropped photo of a {c}.",
    "a close-up photo of a {c}.",
];

/// A template with its class name, "a" turned into "an" before a vowel.
pub fn fill(template: &str, class: &str) -> String {
    let text = template.replace("{c}", class);
    if class.starts_with(['a', 'e', 'i', 'o', 'u']) {
        let (a, an) = (format!("a {class}"), format!("an {class}"));
        if let Some(rest) = text.strip_prefix(&a) {
            return format!("{an}{rest}");
        }
        return text.replace(&format!(" {a}"), &format!(" {an}"));
    }
    text
}

pub struct Converted {
    pub train_shards: Vec<PathBuf>,
    pub test_shards: Vec<PathBuf>,
}

fn load(source: &Path, split: &str) -> Result<(Vec<GrayImage>, Vec<u8>)> {
    let images = read_idx(&source.join(format!("{split}-images-idx3-ubyte.gz")))?;
    let labels = read_idx(&source.join(format!("{split}-labels-idx1-ubyte.gz")))?;
    if images.dims.len() != 3 || labels.dims.len() != 1 || images.dims[0] != labels.dims[0] {
        bail!(
            "{split}: images {:?} and labels {:?} do not match",
            images.dims,
            labels.dims
        );
    }
    let (h, w) = (images.dims[1], images.dims[2]);
    let imgs = images
        .data
        .chunks_exact(h * w)
        .map(|px| GrayImage::from_raw(w as u32, h as u32, px.to_vec()).expect("size checked"))
        .collect();
    Ok((imgs, labels.data))
}

fn encode(img: &GrayImage, format: ImageFormat) -> Result<Bytes> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)?;
    Ok(Bytes::from(out.into_inner()))
}

/// Convert up to `limit_train` training images (all when `None`) and all test images.
pub fn convert(
    source: &Path,
    out: &Path,
    per_shard: usize,
    limit_train: Option<usize>,
    seed: u64,
) -> Result<Converted> {
    if !source.join("train-images-idx3-ubyte.gz").is_file() {
        bail!(
            "no Fashion-MNIST at {}: install it with `apt-get install dataset-fashion-mnist`",
            source.display()
        );
    }
    let (train, train_labels) = load(source, "train")?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut writer = ShardWriter::new(&out.join("train"), per_shard, 0)?;
    let n = limit_train.unwrap_or(train.len()).min(train.len());
    for (img, &label) in train.iter().zip(&train_labels).take(n) {
        let class = CLASSNAMES.get(label as usize).copied().unwrap_or("unknown");
        let picks = sample(&mut rng, TRAIN_TEMPLATES.len(), 4);
        let texts: Vec<String> = picks
            .iter()
            .map(|i| fill(TRAIN_TEMPLATES[i], class))
            .collect();
        let key = writer.next_key();
        let json = serde_json::json!({
            "key": key, "status": "success", "text2": texts[1], "text3": texts[2], "syn_text": texts[3],
            "width": img.width(), "height": img.height(),
            "original_width": img.width(), "original_height": img.height(),
            "url": format!("fashion-mnist://train/{key}"),
        });
        writer.write(
            &key,
            &[
                ("jpg", encode(img, ImageFormat::Jpeg)?),
                ("txt", Bytes::from(texts[0].clone())),
                ("json", Bytes::from(serde_json::to_vec(&json)?)),
                // The label too, so the train split doubles as a linear-probe train set.
                ("cls", Bytes::from(label.to_string())),
            ],
        )?;
    }
    let train_shards = writer.finish()?;

    let (test, test_labels) = load(source, "t10k")?;
    let mut writer = ShardWriter::new(&out.join("test"), per_shard, 0)?;
    for (img, &label) in test.iter().zip(&test_labels) {
        let key = writer.next_key();
        writer.write(
            &key,
            &[
                ("png", encode(img, ImageFormat::Png)?),
                ("cls", Bytes::from(label.to_string())),
            ],
        )?;
    }
    let test_shards = writer.finish()?;
    write_atomic(
        &out.join("classnames.txt"),
        (CLASSNAMES.join("\n") + "\n").as_bytes(),
    )?;
    write_atomic(
        &out.join("zeroshot_classification_templates.txt"),
        (EVAL_TEMPLATES.join("\n") + "\n").as_bytes(),
    )?;
    Ok(Converted {
        train_shards,
        test_shards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_follow_the_class_name() {
        assert_eq!(
            fill("a photo of a {c}.", "ankle boot"),
            "a photo of an ankle boot."
        );
        assert_eq!(fill("a {c}.", "ankle boot"), "an ankle boot.");
        assert_eq!(fill("a {c}.", "bag"), "a bag.");
    }

    #[test]
    fn eval_templates_never_occur_in_training() {
        for t in EVAL_TEMPLATES {
            assert!(!TRAIN_TEMPLATES.contains(&t));
        }
    }
}
