//! Classification metrics from a score matrix, as CLIP_benchmark and scikit-learn
//! define them: top-1 and top-5 accuracy, mean per-class recall (the mean over
//! classes present in the labels of each class's recall), and for two classes the
//! ROC AUC of the positive class's score (`sklearn.metrics.roc_auc_score`, ties
//! given their average rank). Zero-shot (the evaluator's and the trainer's hook) and
//! the linear probe all report through here.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassificationMetrics {
    pub acc1: f64,
    pub acc5: f64,
    pub mean_per_class_recall: f64,
    /// Two-class sets only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    pub n: usize,
}

/// Zero-shot metrics plus how many samples were unreadable.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZeroShotMetrics {
    #[serde(flatten)]
    pub metrics: ClassificationMetrics,
    pub skipped: u64,
}

impl std::ops::Deref for ZeroShotMetrics {
    type Target = ClassificationMetrics;
    fn deref(&self) -> &ClassificationMetrics {
        &self.metrics
    }
}

impl ClassificationMetrics {
    /// `scores` is `[labels.len(), classes]`, row-major.
    pub fn from_scores(scores: &[f64], classes: usize, labels: &[usize]) -> Self {
        let n = labels.len();
        assert_eq!(scores.len(), n * classes, "scores must be [n, classes]");
        let (mut top1, mut top5) = (0usize, 0usize);
        let mut per_class = vec![(0usize, 0usize); classes];
        for (row, &label) in scores.chunks_exact(classes.max(1)).zip(labels) {
            let target = row[label];
            // Rank of the true class; a tie goes to the lower class index, as argmax
            // (and so scikit-learn's per-class recall) breaks it.
            let better = row
                .iter()
                .enumerate()
                .filter(|&(c, &v)| v > target || (v == target && c < label))
                .count();
            top1 += (better == 0) as usize;
            top5 += (better < 5) as usize;
            per_class[label].1 += 1;
            per_class[label].0 += (better == 0) as usize;
        }
        let recalls: Vec<f64> = per_class
            .iter()
            .filter(|(_, total)| *total > 0)
            .map(|(ok, total)| *ok as f64 / *total as f64)
            .collect();
        let roc_auc = (classes == 2).then(|| {
            let margin: Vec<f64> = scores.chunks_exact(2).map(|r| r[1] - r[0]).collect();
            let positive: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
            roc_auc(&margin, &positive)
        });
        Self {
            acc1: top1 as f64 / n.max(1) as f64,
            acc5: top5 as f64 / n.max(1) as f64,
            mean_per_class_recall: recalls.iter().sum::<f64>() / recalls.len().max(1) as f64,
            roc_auc,
            n,
        }
    }

    /// The value of a metric by its CLIP_benchmark key.
    pub fn get(&self, key: &str) -> Option<f64> {
        match key {
            "acc1" => Some(self.acc1),
            "acc5" => Some(self.acc5),
            "mean_per_class_recall" => Some(self.mean_per_class_recall),
            "roc_auc" => self.roc_auc,
            _ => None,
        }
    }
}

/// Area under the ROC curve of `score` for `positive`, by the Mann-Whitney U
/// statistic with average ranks for ties. NaN when one class is absent.
pub fn roc_auc(score: &[f64], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let mut ranks = vec![0.0; score.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        let average = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = average;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_a_perfect_a_reversed_and_a_tied_ranking() {
        let pos = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.3, 0.4], &pos), 1.0);
        assert_eq!(roc_auc(&[0.4, 0.3, 0.2, 0.1], &pos), 0.0);
        assert_eq!(roc_auc(&[0.5; 4], &pos), 0.5);
    }

    #[test]
    fn mean_per_class_recall_weights_classes_not_samples() {
        // class 0: 3 samples all right; class 1: 1 sample wrong.
        let scores = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let m = ClassificationMetrics::from_scores(&scores, 2, &[0, 0, 0, 1]);
        assert_eq!(m.acc1, 0.75);
        assert_eq!(m.mean_per_class_recall, 0.5);
    }
}
