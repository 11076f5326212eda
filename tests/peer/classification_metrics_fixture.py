#!/usr/bin/env python3
"""Classification-metric fixture: tests/fixtures/eval/classification_metrics.json.

    /root/venv-peer/bin/python tests/peer/classification_metrics_fixture.py   # any venv with
    # torch and scikit-learn

Top-1/top-5 are CLIP_benchmark's `accuracy` (copied below: its numpy-2-incompatible
`float(array)` replaced by `.item()`), mean per-class recall from
`sklearn.metrics.balanced_accuracy_score` (what CLIP_benchmark reports), and the
two-class ROC AUC from `sklearn.metrics.roc_auc_score` on the class-1 margin, with
scores rounded to 1 decimal so that ties occur (ties get average ranks in both).
"""
import json
import os

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score



def accuracy(output, target, topk=(1,)):
    """clip_benchmark.metrics.zeroshot_classification.accuracy, 1.6.2."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    n = len(target)
    return [correct[:k].reshape(-1).float().sum(0).item() / n for k in topk]


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
rng = np.random.default_rng(0)
cases = []
for n, classes, tie_round in [(500, 10, None), (300, 7, None), (400, 2, 1), (250, 2, None)]:
    labels = rng.integers(0, classes, n)
    # Scores correlated with the label so that metrics are far from 0 and 1.
    scores = rng.standard_normal((n, classes))
    scores[np.arange(n), labels] += 1.0
    if tie_round is not None:
        scores = scores.round(tie_round)
    logits = torch.from_numpy(scores)
    target = torch.from_numpy(labels)
    k5 = min(5, classes)
    acc1, acc5 = accuracy(logits, target, topk=(1, k5))
    case = {
        "classes": classes,
        "labels": labels.tolist(),
        "scores": scores.ravel().tolist(),
        "acc1": acc1,
        "acc5": acc5,
        "mean_per_class_recall": balanced_accuracy_score(labels, scores.argmax(1)),
    }
    if classes == 2:
        case["roc_auc"] = roc_auc_score(labels, scores[:, 1] - scores[:, 0])
    cases.append(case)
    print({k: v for k, v in case.items() if k not in ("labels", "scores")})
os.makedirs(os.path.join(ROOT, "tests/fixtures/eval"), exist_ok=True)
with open(os.path.join(ROOT, "tests/fixtures/eval/classification_metrics.json"), "w") as f:
    json.dump({"cases": cases}, f)
