//! Zero-shot classification (CLIP_benchmark's `zeroshot_classification`): the
//! classifier is the model library's (`realsyn_model::zero_shot`); logits are 100 x
//! cosine; metrics come from `metrics::ClassificationMetrics`.

use anyhow::Result;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use realsyn_model::zero_shot::{zero_shot_classifier, zero_shot_logits};
use realsyn_model::{ClipTokenizer, DualEncoder};

use crate::datasets::LabelledDataset;
use crate::features::{Features, image_features};
use realsyn_data::labelled::metrics::ClassificationMetrics;
pub use realsyn_data::labelled::metrics::ZeroShotMetrics;

/// Evaluate `model` on `data` with `data.templates`.
pub fn zero_shot_eval<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    tokenizer: &ClipTokenizer,
    data: &LabelledDataset,
    batch: usize,
    device: &B::Device,
) -> Result<ZeroShotMetrics> {
    let classifier =
        zero_shot_classifier(model, tokenizer, &data.classnames, &data.templates, device)?;
    let features = image_features(model, data, usize::MAX, batch, device, &mut |_| {})?;
    Ok(classify(&features, classifier, device))
}

/// Score `features` against `classifier` (`[dim, classes]`).
pub fn classify<B: Backend>(
    features: &Features,
    classifier: Tensor<B, 2>,
    device: &B::Device,
) -> ZeroShotMetrics {
    let [_, classes] = classifier.dims();
    let scores = zero_shot_logits(features.x.clone(), features.dim, classifier, device);
    ZeroShotMetrics {
        metrics: ClassificationMetrics::from_scores(&scores, classes, &features.y),
        skipped: features.skipped,
    }
}
