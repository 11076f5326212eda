//! The zero-shot hook of training (open_clip's `training/zero_shot.py`): the
//! classifier and its logits from the model library (`realsyn_model::zero_shot`, as
//! open_clip's `build_zero_shot_classifier`), the images of a labelled evaluation set
//! read by `realsyn_data::labelled`, and the same metrics `realsyn eval` reports
//! (`realsyn_data::labelled::metrics`). Training needs no evaluator for it.

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_data::EvalTransform;
use realsyn_data::labelled::LabelledDataset;
use realsyn_data::labelled::metrics::{ClassificationMetrics, ZeroShotMetrics};
use realsyn_data::wds::SkipCounter;
use realsyn_model::encoder::embed_pixels;
use realsyn_model::zero_shot::{zero_shot_classifier, zero_shot_logits};
use realsyn_model::{ClipTokenizer, DualEncoder};

/// Zero-shot metrics of `model` on `data` with the templates it ships.
pub fn zero_shot_accuracy<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    tokenizer: &ClipTokenizer,
    data: &LabelledDataset,
    batch: usize,
    device: &B::Device,
) -> Result<ZeroShotMetrics> {
    let classifier =
        zero_shot_classifier(model, tokenizer, &data.classnames, &data.templates, device)?;
    let skips = SkipCounter::new();
    let (mut x, mut labels, mut dim) = (Vec::new(), Vec::new(), 0);
    for b in data.batches(EvalTransform::new(model.image_size() as u32), batch, &skips) {
        if b.labels.is_empty() {
            continue;
        }
        let f = embed_pixels(model, &b.pixels, true, device)?;
        dim = f.width();
        x.extend(f.into_vec());
        labels.extend(b.labels);
    }
    let scores = zero_shot_logits(x, dim, classifier, device);
    Ok(ZeroShotMetrics {
        metrics: ClassificationMetrics::from_scores(&scores, data.classnames.len(), &labels),
        skipped: skips.total(),
    })
}
