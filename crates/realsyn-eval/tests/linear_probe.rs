//! The linear probe agrees with scikit-learn's LogisticRegression on real features
//! (fixture: tests/peer/linear_probe_fixture.py): Fashion-MNIST pooled to 7x7, for
//! every C of the grid, and through the C-selection protocol.

use std::path::{Path, PathBuf};
use std::time::Instant;

use realsyn_data::datasets::fashion_mnist::DEBIAN_DIR;
use realsyn_data::datasets::idx::read_idx;
use realsyn_eval::linear_probe::{Split, fit, probe};

fn features(file: &str, n: usize) -> Vec<f32> {
    let a = read_idx(&Path::new(DEBIAN_DIR).join(file)).expect(
        "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist (scripts/setup-system.sh)",
    );
    let mut out = Vec::with_capacity(n * 49);
    for img in a.data.chunks_exact(784).take(n) {
        for by in 0..7 {
            for bx in 0..7 {
                let mut sum = 0u32;
                for y in 0..4 {
                    for x in 0..4 {
                        sum += img[(by * 4 + y) * 28 + bx * 4 + x] as u32;
                    }
                }
                out.push(sum as f32 / 4080.0);
            }
        }
    }
    out
}

fn labels(file: &str, n: usize) -> Vec<usize> {
    read_idx(&Path::new(DEBIAN_DIR).join(file)).unwrap().data[..n]
        .iter()
        .map(|&v| v as usize)
        .collect()
}

#[test]
fn logistic_regression_matches_scikit_learn_within_half_a_point() {
    let fx: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/eval/linear_probe.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (xtr, ytr) = (
        features("train-images-idx3-ubyte.gz", 3000),
        labels("train-labels-idx1-ubyte.gz", 3000),
    );
    let (xte, yte) = (
        features("t10k-images-idx3-ubyte.gz", 1000),
        labels("t10k-labels-idx1-ubyte.gz", 1000),
    );
    let train = Split {
        x: &xtr,
        y: &ytr,
        dim: 49,
    };
    let test = Split {
        x: &xte,
        y: &yte,
        dim: 49,
    };
    let grid: Vec<f64> = fx["grid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for &c in &grid {
        let start = Instant::now();
        let m = fit(&train, 10, c, 5000, 1e-6);
        let ours = m.accuracy(&test);
        let sk = fx["per_c"][format!("{c:?}")]["test_accuracy"]
            .as_f64()
            .unwrap();
        eprintln!(
            "C={c}: ours {ours:.4} sklearn {sk:.4} ({} iterations, {:.2?})",
            m.iterations,
            start.elapsed()
        );
        assert!(
            (ours - sk).abs() <= 0.005,
            "C={c}: test accuracy {ours} vs scikit-learn {sk}"
        );
    }
    let r = probe(&train, &test, 10, &grid, 5000);
    let sk_acc = fx["test_accuracy"].as_f64().unwrap();
    assert!(
        (r.test_accuracy - sk_acc).abs() <= 0.005,
        "probe {} vs scikit-learn {sk_acc}",
        r.test_accuracy
    );
    eprintln!(
        "probe: C={} val {:.4} test {:.4}; scikit-learn C={} test {sk_acc:.4}",
        r.c, r.val_accuracy, r.test_accuracy, fx["best_c"]
    );
}
