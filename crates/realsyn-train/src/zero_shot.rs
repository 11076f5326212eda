//! The zero-shot hook of training (open_clip's `training/zero_shot.py`): the
//! classifier from the model library (`realsyn_model::zero_shot`, as open_clip's
//! `build_zero_shot_classifier`), the images of a labelled evaluation set read by
//! `realsyn_data::labelled`, and top-1 / top-5 accuracy with mean per-class recall.
//! Training needs no evaluator for it; `realsyn eval` runs the full CLIP_benchmark
//! suite. Both score 100 x cosine over all images at once and break ties towards the
//! lower class index (argmax), so with the same templates they agree.

use anyhow::Result;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use realsyn_data::EvalTransform;
use realsyn_data::labelled::LabelledDataset;
use realsyn_data::wds::SkipCounter;
use realsyn_model::common::batch::to_rows;
use realsyn_model::encoder::embed_pixels;
use realsyn_model::zero_shot::zero_shot_classifier;
use realsyn_model::{ClipTokenizer, DualEncoder};
use serde::Serialize;

/// What the hook reports (and `summary.json` keeps).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZeroShotAccuracy {
    pub acc1: f64,
    pub acc5: f64,
    /// The mean over classes present of each class's recall.
    pub mean_per_class_recall: f64,
    /// Images scored.
    pub n: usize,
    /// Images skipped as unreadable.
    pub skipped: u64,
}

/// Zero-shot accuracy of `model` on `data` with the templates it ships.
pub fn zero_shot_accuracy<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    tokenizer: &ClipTokenizer,
    data: &LabelledDataset,
    batch: usize,
    device: &B::Device,
) -> Result<ZeroShotAccuracy> {
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
    let n = labels.len();
    let scores = if n == 0 {
        Vec::new()
    } else {
        let x = Tensor::<B, 2>::from_data(TensorData::new(x, [n, dim]), device);
        to_rows(x.matmul(classifier).mul_scalar(100.0)).0
    };
    Ok(accuracy(
        &scores,
        data.classnames.len(),
        &labels,
        skips.total(),
    ))
}

/// Top-1, top-5 and mean per-class recall of `scores` (`[labels.len(), classes]`).
fn accuracy(scores: &[f32], classes: usize, labels: &[usize], skipped: u64) -> ZeroShotAccuracy {
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut per_class = vec![(0usize, 0usize); classes];
    for (row, &label) in scores.chunks_exact(classes.max(1)).zip(labels) {
        let target = row[label];
        // The true class's rank; a tie goes to the lower class index, as argmax.
        let better = row
            .iter()
            .enumerate()
            .filter(|&(c, &v)| v > target || (v == target && c < label))
            .count();
        top1 += (better == 0) as usize;
        top5 += (better < 5) as usize;
        per_class[label].0 += (better == 0) as usize;
        per_class[label].1 += 1;
    }
    let recalls: Vec<f64> = per_class
        .iter()
        .filter(|(_, total)| *total > 0)
        .map(|(ok, total)| *ok as f64 / *total as f64)
        .collect();
    let n = labels.len();
    ZeroShotAccuracy {
        acc1: top1 as f64 / n.max(1) as f64,
        acc5: top5 as f64 / n.max(1) as f64,
        mean_per_class_recall: recalls.iter().sum::<f64>() / recalls.len().max(1) as f64,
        n,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_ties_and_per_class_recall() {
        // 3 images, 6 classes: the first right, the second 2nd (top-5 only), the
        // third tied with a lower class (so wrong, as argmax says).
        let scores = [
            9.0, 1.0, 0.0, 0.0, 0.0, 0.0, //
            2.0, 1.0, 0.0, 0.0, 0.0, 0.0, //
            5.0, 5.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let a = accuracy(&scores, 6, &[0, 1, 1], 2);
        assert_eq!((a.n, a.skipped), (3, 2));
        assert!((a.acc1 - 1.0 / 3.0).abs() < 1e-12);
        assert!((a.acc5 - 1.0).abs() < 1e-12);
        // Class 0: 1/1, class 1: 0/2.
        assert!((a.mean_per_class_recall - 0.5).abs() < 1e-12);
    }
}
