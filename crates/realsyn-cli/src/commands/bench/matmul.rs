//! One matrix product on a backend: the GEMM kernels' own rate, the ceiling under
//! encode-image and the training step (a step that runs far below it is bound by
//! something else: per-op overhead, element-wise passes). The peer is
//! `benches/model_bench.py --mode matmul` (torch.matmul on the same device).
//!
//! Square by default; `--m/--n/--k` and `--layout` give a training step's own
//! products (the forward `x W`, a weight's gradient `x^T dY` whose left operand is a
//! transposed view, the input's gradient `dY W^T`). On the CubeCL backends the
//! kernel family is `REALSYN_MATMUL`'s (third_party/burn-cubecl/PATCHES.md), so one
//! shape can be timed per family and beside torch.

use std::time::Instant;

use anyhow::Result;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, FloatDType, Tensor};
use realsyn_runtime::{BackendJob, dispatch};

#[derive(clap::Args, Clone)]
pub struct Matmul {
    /// m = n = k of the product, unless given one by one.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// Rows of the product (tokens in a layer's forward pass).
    #[arg(long)]
    m: Option<usize>,
    /// Columns of the product.
    #[arg(long)]
    n: Option<usize>,
    /// The summed dimension.
    #[arg(long)]
    k: Option<usize>,
    /// nn: both operands contiguous (x W); tn: the left one a transposed view
    /// (x^T dY, a weight's gradient); nt: the right one (dY W^T, the input's).
    #[arg(long, default_value = "nn", value_parser = ["nn", "tn", "nt"])]
    layout: String,
    /// Element type of both operands and the result.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    dtype: String,
    /// cpu (flex), cuda[:N] (--features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Untimed products first (kernel compilation, autotuning).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed products (the median is reported).
    #[arg(long, default_value_t = 10)]
    iters: usize,
}

impl Matmul {
    fn mnk(&self) -> [usize; 3] {
        [self.m, self.n, self.k].map(|d| d.unwrap_or(self.size))
    }
}

pub fn run(a: &Matmul) -> Result<()> {
    let seconds = dispatch(&a.device, a.clone())?;
    let median = super::median(seconds.clone());
    let [m, n, k] = a.mnk();
    let flops = 2.0 * (m * n * k) as f64;
    let family = std::env::var("REALSYN_MATMUL").unwrap_or_else(|_| "auto".into());
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn-burn", "mode": "matmul", "backend": a.device, "dtype": a.dtype,
            "size": a.size, "m": m, "n": n, "k": k, "layout": a.layout,
            "matmul_family": family, "seconds": seconds, "median_s": median,
            "tflops": flops / median / 1e12,
            "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

impl BackendJob for Matmul {
    type Output = Vec<f64>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Vec<f64>> {
        let operand = |rows: usize, cols: usize| {
            let t = Tensor::<B, 2>::random([rows, cols], Distribution::Normal(0.0, 1.0), &device);
            if self.dtype == "bf16" {
                t.cast(FloatDType::BF16)
            } else {
                t
            }
        };
        let [m, n, k] = self.mnk();
        let lhs = match self.layout.as_str() {
            "tn" => operand(k, m).transpose(),
            _ => operand(m, k),
        };
        let rhs = match self.layout.as_str() {
            "nt" => operand(n, k).transpose(),
            _ => operand(k, n),
        };
        let mut times = Vec::with_capacity(self.iters);
        for i in 0..self.warmup + self.iters {
            let start = Instant::now();
            // One element read back waits for the product (lazy backends queue it).
            let _ = lhs
                .clone()
                .matmul(rhs.clone())
                .slice([0..1, 0..1])
                .into_data();
            if i >= self.warmup {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        Ok(times)
    }
}
