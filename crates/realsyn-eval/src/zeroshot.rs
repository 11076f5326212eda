//! Zero-shot classification (CLIP_benchmark's `zeroshot_classification`): each class
//! is the normalised mean of its normalised template embeddings; logits are 100 x
//! cosine; metrics come from `metrics::ClassificationMetrics`.

use std::ops::Deref;

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use realsyn_model::batch::{to_rows, token_batch};
use realsyn_model::{Clip, ClipTokenizer, l2_normalize};
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

/// A template with the class name put in: `{c}` (CLIP_benchmark) or `{}` (SLIP/CLIP).
pub fn fill_template(template: &str, class: &str) -> String {
    if template.contains("{c}") {
        template.replace("{c}", class)
    } else {
        template.replace("{}", class)
    }
}

/// `[embed_dim, n_classes]` classifier weights.
pub fn zero_shot_classifier<B: Backend>(
    model: &Clip<B>,
    tokenizer: &ClipTokenizer,
    classnames: &[String],
    templates: &[String],
    device: &B::Device,
) -> Result<Tensor<B, 2>> {
    if templates.is_empty() {
        bail!("zero-shot classification needs at least one prompt template");
    }
    let mut columns = Vec::with_capacity(classnames.len());
    for c in classnames {
        let texts: Vec<String> = templates.iter().map(|t| fill_template(t, c)).collect();
        let rows = tokenizer.tokenize_batch(&texts);
        let emb = l2_normalize(model.encode_text(token_batch::<B>(&rows, device)));
        columns.push(l2_normalize(emb.mean_dim(0)));
    }
    Ok(Tensor::cat(columns, 0).transpose())
}

/// Evaluate `model` on `data` with `data.templates`.
pub fn zero_shot_eval<B: Backend>(
    model: &Clip<B>,
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
