//! Frozen image features of a labelled split, computed once in batches and shared
//! by zero-shot classification and the linear probe.

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_data::EvalTransform;
use realsyn_data::wds::SkipCounter;
use realsyn_model::batch::{image_batch, to_rows};
use realsyn_model::{Clip, l2_normalize};

use crate::LabelledDataset;
use crate::linear_probe::Split;

/// `[n, dim]` L2-normalised features (as CLIP_benchmark normalises them) and labels.
pub struct Features {
    pub x: Vec<f32>,
    pub y: Vec<usize>,
    pub dim: usize,
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
}

/// Features of up to `limit` samples of `data`, in its order.
pub fn image_features<B: Backend>(
    model: &Clip<B>,
    data: &LabelledDataset,
    limit: usize,
    batch: usize,
    device: &B::Device,
) -> Result<Features> {
    let size = model.config.vision_cfg.image_size;
    let skips = SkipCounter::new();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (pixels, labels) in data.batches(EvalTransform::new(size as u32), batch, &skips) {
        if y.len() >= limit {
            break;
        }
        if labels.is_empty() {
            continue;
        }
        let f = l2_normalize(model.encode_image(image_batch::<B>(&pixels, size, device)));
        x.extend(to_rows(f).0);
        y.extend(labels);
    }
    let dim = x.len() / y.len().max(1);
    let n = y.len().min(limit);
    x.truncate(n * dim);
    y.truncate(n);
    Ok(Features {
        x,
        y,
        dim,
        skipped: skips.total(),
    })
}
