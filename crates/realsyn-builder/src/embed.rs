//! Image and sentence embedders for semantic dedup. The paper embeds images with
//! EVA02-CLIP E/14-plus;
//! any encoder that maps images to L2-normalised vectors plugs in through
//! `ImageEmbedder` (`realsyn-runtime` provides any dual encoder's towers,
//! `--image-encoder`).

use anyhow::Result;
use image::DynamicImage;
use realsyn_io::Embeddings;

pub trait ImageEmbedder {
    /// What the embeddings are, for the manifest and logs.
    fn name(&self) -> String;
    /// One row per image, each L2-normalised.
    fn embed(&mut self, images: &[DynamicImage]) -> Result<Embeddings>;
}

/// A colour-histogram embedding (8x8x8 RGB bins, square-rooted, L2-normalised): no
/// model needed, blind to geometry (a mirrored or cropped copy keeps its histogram),
/// so it finds the duplicates a perceptual hash misses but also merges unrelated
/// images of the same palette. A baseline and a model-free check of the semantic
/// pass; use a CLIP encoder for real builds.
pub struct ColorHistogram;

impl ImageEmbedder for ColorHistogram {
    fn name(&self) -> String {
        "color-histogram-512".into()
    }

    fn embed(&mut self, images: &[DynamicImage]) -> Result<Embeddings> {
        const D: usize = 512;
        let mut out = vec![0f32; images.len() * D];
        for (img, row) in images.iter().zip(out.chunks_mut(D)) {
            let small = img.thumbnail(128, 128).to_rgb8();
            for p in small.pixels() {
                let [r, g, b] = p.0;
                row[(r as usize >> 5) * 64 + (g as usize >> 5) * 8 + (b as usize >> 5)] += 1.0;
            }
            row.iter_mut().for_each(|v| *v = v.sqrt());
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Embeddings::new(out, D)
    }
}

/// Sentence embedders for semantic sentence dedup. The paper embeds sentences with
/// its CLIP text encoder (the same one it clusters them with); any encoder that maps
/// texts to L2-normalised vectors plugs in (`realsyn-runtime` provides a dual
/// encoder's text tower, `--text-encoder`).
pub trait TextEmbedder {
    /// What the embeddings are, for logs.
    fn name(&self) -> String;
    /// One row per text, each L2-normalised.
    fn embed(&mut self, texts: &[&str]) -> Result<Embeddings>;
}

/// A hashed bag-of-words embedding (512 signed buckets of square-rooted word counts,
/// L2-normalised): no model needed, blind to word order, so it links reorderings
/// and one-word edits that the near-exact key misses, and nothing else. A baseline and
/// a model-free check of the semantic pass; use a CLIP text encoder for real builds.
pub struct BagOfWords;

impl TextEmbedder for BagOfWords {
    fn name(&self) -> String {
        "bag-of-words-512".into()
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Embeddings> {
        const D: usize = 512;
        let mut out = vec![0f32; texts.len() * D];
        for (text, row) in texts.iter().zip(out.chunks_mut(D)) {
            for w in crate::filter::text_filters::words(text) {
                let h = crate::filter::text_filters::dedup_key(&[w.to_lowercase()]);
                let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
                row[(h % D as u64) as usize] += sign;
            }
            row.iter_mut()
                .for_each(|v| *v = v.signum() * v.abs().sqrt());
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Embeddings::new(out, D)
    }
}

/// One model with both towers, whose image and sentence embeddings share one space
/// (a CLIP): what the pairing stages (`cluster-text`, `retrieve`) need, since they
/// compare images with sentences.
pub trait DualEmbedder: ImageEmbedder + TextEmbedder {}

impl<T: ImageEmbedder + TextEmbedder> DualEmbedder for T {}

/// The encoder a semantic dedup step runs: a model-free baseline or dual-encoder
/// weights. Written in the manifest as the string the user gave (`color-histogram`,
/// `bag-of-words`, or the weights' path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderChoice {
    /// `color-histogram`: the image baseline (`ColorHistogram`).
    ColorHistogram,
    /// `bag-of-words`: the sentence baseline (`BagOfWords`).
    BagOfWords,
    /// Weights of a dual encoder (any file or folder the model library reads).
    Weights(String),
}

impl EncoderChoice {
    /// The weights to load, if this is not a baseline.
    pub fn weights(&self) -> Option<&str> {
        match self {
            EncoderChoice::Weights(w) => Some(w),
            _ => None,
        }
    }
}

impl std::str::FromStr for EncoderChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "color-histogram" => EncoderChoice::ColorHistogram,
            "bag-of-words" => EncoderChoice::BagOfWords,
            w => EncoderChoice::Weights(w.to_string()),
        })
    }
}

impl std::fmt::Display for EncoderChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncoderChoice::ColorHistogram => "color-histogram",
            EncoderChoice::BagOfWords => "bag-of-words",
            EncoderChoice::Weights(w) => w,
        })
    }
}

impl serde::Serialize for EncoderChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EncoderChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse()
            .unwrap_or_else(|e: std::convert::Infallible| match e {}))
    }
}
