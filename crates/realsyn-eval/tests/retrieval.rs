//! Retrieval Recall@K equals CLIP_benchmark's on the same features (fixture:
//! tests/peer/retrieval_fixture.py, scored by CLIP_benchmark's own functions).

use std::path::PathBuf;

use realsyn_eval::retrieval_recalls;

#[test]
fn recalls_match_clip_benchmark() {
    let fx: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/eval/retrieval.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let rows = |k: &str| -> Vec<Vec<f32>> {
        fx[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect()
    };
    let (img, txt) = (rows("image_features"), rows("text_features"));
    let text_image: Vec<usize> = fx["text_image"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut scores = Vec::with_capacity(img.len() * txt.len());
    for i in &img {
        for t in &txt {
            scores.push(i.iter().zip(t).map(|(a, b)| a * b).sum());
        }
    }
    let ours = retrieval_recalls(&scores, img.len(), &text_image, &[1, 5, 10]);
    for (name, value) in fx["metrics"].as_object().unwrap() {
        let expected = value.as_f64().unwrap();
        assert!(
            (ours[name] - expected).abs() < 1e-6,
            "{name}: {} vs CLIP_benchmark {expected}",
            ours[name]
        );
    }
    assert!(
        ours["image_retrieval_recall@1"] < 0.9,
        "the fixture is not trivially easy"
    );
}
