//! Classification metrics equal CLIP_benchmark's top-k accuracy and scikit-learn's
//! `balanced_accuracy_score` / `roc_auc_score` on the same scores (fixture:
//! tests/peer/classification_metrics_fixture.py; one two-class case has tied scores).

use std::path::PathBuf;

use realsyn_eval::ClassificationMetrics;

#[test]
fn metrics_match_clip_benchmark_and_sklearn() {
    let fx: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/eval/classification_metrics.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let classes = case["classes"].as_u64().unwrap() as usize;
        let labels: Vec<usize> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let scores: Vec<f64> = case["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let ours = ClassificationMetrics::from_scores(&scores, classes, &labels);
        for key in ["acc1", "acc5", "mean_per_class_recall", "roc_auc"] {
            let Some(expected) = case.get(key).and_then(|v| v.as_f64()) else {
                assert!(ours.get(key).is_none() || key != "roc_auc" || classes == 2);
                continue;
            };
            let got = ours
                .get(key)
                .unwrap_or_else(|| panic!("{key} missing for {classes} classes"));
            assert!(
                (got - expected).abs() < 1e-9,
                "{classes} classes, {key}: ours {got}, peer {expected}"
            );
        }
        assert_eq!(ours.roc_auc.is_some(), classes == 2);
    }
}
