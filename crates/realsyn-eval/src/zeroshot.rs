//! Zero-shot classification (CLIP_benchmark's `zeroshot_classification`): the
//! classifier is the model library's (`realsyn_model::zero_shot`); logits are 100 x
//! cosine; metrics come from `metrics::ClassificationMetrics`.

use std::ops::Deref;

use anyhow::Result;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use realsyn_model::common::batch::to_rows;
use realsyn_model::zero_shot::zero_shot_classifier;
use realsyn_model::{ClipTokenizer, DualEncoder};
use serde::Serialize;

use crate::datasets::LabelledDataset;
use crate::features::{Features, image_features};
use crate::metrics::ClassificationMetrics;

/// Zero-shot metrics plus how many samples were unreadable.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZeroShotMetrics {
    #[serde(flatten)]
    pub metrics: ClassificationMetrics,
    pub skipped: u64,
}

impl Deref for ZeroShotMetrics {
    type Target = ClassificationMetrics;
    fn deref(&self) -> &ClassificationMetrics {
        &self.metrics
    }
}

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
    let n = features.y.len();
    let [_, classes] = classifier.dims();
    let scores: Vec<f64> = if n == 0 {
        Vec::new()
    } else {
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(features.x.clone(), [n, features.dim]),
            device,
        );
        // 100 x cosine, as CLIP; the scale changes no metric but keeps logits comparable.
        let (logits, _) = to_rows(x.matmul(classifier).mul_scalar(100.0));
        logits.into_iter().map(f64::from).collect()
    };
    ZeroShotMetrics {
        metrics: ClassificationMetrics::from_scores(&scores, classes, &features.y),
        skipped: features.skipped,
    }
}
