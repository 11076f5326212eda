//! One logistic-regression fit; the peer is scikit-learn in `benches/linear_probe.sh`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

#[derive(clap::Args)]
pub struct LinearProbe {
    /// Features `[n, d]` (.npy, f32).
    #[arg(long)]
    features: PathBuf,
    /// Labels `[n]` (.npy, i32).
    #[arg(long)]
    labels: PathBuf,
    /// Inverse L2 strength (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    c: f64,
}

/// Fit time of one logistic regression (scikit-learn's objective, lbfgs).
pub fn run(a: &LinearProbe) -> Result<()> {
    use realsyn_eval::linear_probe::{Split, fit};
    use realsyn_io::npy::read_npy;
    let (x, shape) = read_npy::<f32>(&a.features)?;
    let (y, _) = read_npy::<i32>(&a.labels)?;
    let y: Vec<usize> = y.iter().map(|&v| v as usize).collect();
    let classes = y.iter().max().map_or(0, |m| m + 1);
    let split = Split {
        x: &x,
        y: &y,
        dim: shape[1],
    };
    let start = Instant::now();
    let model = fit(&split, classes, a.c, 1000, 1e-4);
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "linear-probe", "n": y.len(), "dim": shape[1], "classes": classes,
            "C": a.c, "seconds": seconds, "iterations": model.iterations,
            "train_accuracy": model.accuracy(&split),
        })
    );
    Ok(())
}
