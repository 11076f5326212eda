//! Frozen image features of a dataset split, computed once in batches and shared by
//! zero-shot classification, the linear probe and retrieval (and cached on disk by
//! `cache`).

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_data::EvalTransform;
use realsyn_data::wds::SkipCounter;
use realsyn_model::DualEncoder;
use realsyn_model::encoder::embed_pixels;

use crate::datasets::LabelledDataset;
use crate::linear_probe::Split;

/// `[n, dim]` L2-normalised features (as CLIP_benchmark normalises them), labels, and
/// (retrieval) each image's captions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    pub x: Vec<f32>,
    pub y: Vec<usize>,
    pub dim: usize,
    pub captions: Vec<Vec<String>>,
    /// Samples skipped as unreadable.
    pub skipped: u64,
}

impl Features {
    /// The features as a linear-probe split.
    pub fn split(&self) -> Split<'_> {
        Split {
            x: &self.x,
            y: &self.y,
            dim: self.dim,
        }
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Features of up to `limit` samples of `data`, in its order. `progress` is called
/// with the number of samples done after each batch.
pub fn image_features<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    data: &LabelledDataset,
    limit: usize,
    batch: usize,
    device: &B::Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Features> {
    let size = model.image_size();
    let skips = SkipCounter::new();
    let mut out = Features::default();
    // The dataset reader batches (decoding in parallel, skipping unreadable samples),
    // so each of its batches is one encoder batch.
    for b in data.batches(EvalTransform::new(size as u32), batch, &skips) {
        if out.y.len() >= limit {
            break;
        }
        if b.labels.is_empty() {
            continue;
        }
        let f = embed_pixels(model, &b.pixels, true, device)?;
        out.dim = f.width();
        out.x.extend(f.into_vec());
        out.y.extend(b.labels);
        out.captions.extend(b.captions);
        progress(out.y.len());
    }
    let n = out.y.len().min(limit);
    out.x.truncate(n * out.dim);
    out.y.truncate(n);
    out.captions.truncate(n);
    out.skipped = skips.total();
    Ok(out)
}
