//! One square matrix product on a backend: the GEMM kernels' own rate, the ceiling
//! under encode-image and the training step (a step that runs far below it is bound
//! by something else: per-op overhead, element-wise passes). The peer is
//! `benches/model_bench.py --mode matmul` (torch.matmul on the same device).

use std::time::Instant;

use anyhow::Result;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, FloatDType, Tensor};
use realsyn_runtime::{BackendJob, dispatch};

#[derive(clap::Args, Clone)]
pub struct Matmul {
    /// m = n = k of the product.
    #[arg(long, default_value_t = 2048)]
    size: usize,
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

pub fn run(a: &Matmul) -> Result<()> {
    let seconds = dispatch(&a.device, a.clone())?;
    let median = super::median(seconds.clone());
    let flops = 2.0 * (a.size as f64).powi(3);
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn-burn", "mode": "matmul", "backend": a.device, "dtype": a.dtype,
            "size": a.size, "seconds": seconds, "median_s": median,
            "tflops": flops / median / 1e12,
            "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

impl BackendJob for Matmul {
    type Output = Vec<f64>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Vec<f64>> {
        let operand = || {
            let t = Tensor::<B, 2>::random(
                [self.size, self.size],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            if self.dtype == "bf16" {
                t.cast(FloatDType::BF16)
            } else {
                t
            }
        };
        let (lhs, rhs) = (operand(), operand());
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
