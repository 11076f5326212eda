//! Zero-shot classification (CLIP_benchmark's `zeroshot_classification`): each class
//! is the normalised mean of its normalised template embeddings; an image is
//! assigned the class of highest cosine similarity. Metrics: top-1, top-5 and mean
//! per-class recall, as CLIP_benchmark reports them.

use anyhow::Result;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use realsyn_model::batch::{to_rows, token_batch};
use realsyn_model::{Clip, ClipTokenizer, l2_normalize};
use serde::Serialize;

use crate::features::{Features, image_features};
use crate::labelled::LabelledDataset;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZeroShotMetrics {
    pub acc1: f64,
    pub acc5: f64,
    pub mean_per_class_recall: f64,
    pub n: usize,
    pub skipped: u64,
}

/// `[embed_dim, n_classes]` classifier weights.
pub fn zero_shot_classifier<B: Backend>(
    model: &Clip<B>,
    tokenizer: &ClipTokenizer,
    classnames: &[String],
    templates: &[String],
    device: &B::Device,
) -> Result<Tensor<B, 2>> {
    let mut columns = Vec::with_capacity(classnames.len());
    for c in classnames {
        let texts: Vec<String> = templates.iter().map(|t| t.replace("{c}", c)).collect();
        let rows = tokenizer.tokenize_batch(&texts);
        let emb = l2_normalize(model.encode_text(token_batch::<B>(&rows, device)));
        let mean = emb.mean_dim(0); // [1, d]
        columns.push(l2_normalize(mean));
    }
    Ok(Tensor::cat(columns, 0).transpose())
}

/// Evaluate `model` on `data` (a labelled split).
pub fn zero_shot_eval<B: Backend>(
    model: &Clip<B>,
    tokenizer: &ClipTokenizer,
    data: &LabelledDataset,
    batch: usize,
    device: &B::Device,
) -> Result<ZeroShotMetrics> {
    let classifier =
        zero_shot_classifier(model, tokenizer, &data.classnames, &data.templates, device)?;
    let features = image_features(model, data, usize::MAX, batch, device)?;
    Ok(classify(
        &features,
        classifier,
        data.classnames.len(),
        device,
    ))
}

/// Top-1, top-5 and mean per-class recall of `features` against `classifier`
/// (`[dim, classes]`).
pub fn classify<B: Backend>(
    features: &Features,
    classifier: Tensor<B, 2>,
    n_classes: usize,
    device: &B::Device,
) -> ZeroShotMetrics {
    let n = features.y.len();
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut per_class = vec![(0usize, 0usize); n_classes];
    if n > 0 {
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(features.x.clone(), [n, features.dim]),
            device,
        );
        let (logits, [_, cols]) = to_rows(x.matmul(classifier));
        for (row, &label) in logits.chunks_exact(cols).zip(&features.y) {
            let target = row[label];
            // Rank of the true class; ties count against it, as topk would break them.
            let better = row.iter().filter(|&&v| v > target).count();
            top1 += (better == 0) as usize;
            top5 += (better < 5) as usize;
            per_class[label].1 += 1;
            per_class[label].0 += (better == 0) as usize;
        }
    }
    let seen: Vec<f64> = per_class
        .iter()
        .filter(|(_, total)| *total > 0)
        .map(|(ok, total)| *ok as f64 / *total as f64)
        .collect();
    ZeroShotMetrics {
        acc1: top1 as f64 / n.max(1) as f64,
        acc5: top5 as f64 / n.max(1) as f64,
        mean_per_class_recall: seen.iter().sum::<f64>() / seen.len().max(1) as f64,
        n,
        skipped: features.skipped,
    }
}
