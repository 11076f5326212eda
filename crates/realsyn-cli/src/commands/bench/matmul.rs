//! Matrix products on a backend: the GEMM kernels' own rate, the ceiling under
//! encode-image and the training step (a step that runs far below it is bound by
//! something else: per-op overhead, element-wise passes). The peer is
//! `benches/model_bench.py --mode matmul` (torch.matmul on the same device).
//!
//! Square by default; `--shape` (repeatable) gives a training step's own products:
//! the forward `x W`, a weight's gradient `x^T dY` (`:tn`, the left operand a
//! transposed view) and the input's gradient `dY W^T` (`:nt`). On the CubeCL
//! backends the kernel family is `REALSYN_MATMUL`'s (third_party/burn-cubecl/
//! PATCHES.md), read once per process: one run per family times every shape.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, FloatDType, Tensor};
use realsyn_runtime::{BackendJob, dispatch};

#[derive(clap::Args, Clone)]
pub struct Matmul {
    /// m = n = k of one square product, when no --shape is given.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// A product `MxNxK` (rows, columns, summed dimension), optionally `:tn` (the
    /// left operand a transposed view, as in a weight's gradient x^T dY) or `:nt`
    /// (the right one, as in the input's gradient dY W^T); repeatable, one JSON
    /// line each.
    #[arg(long)]
    shape: Vec<String>,
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

/// One product: `[m, n, k]` and which operand is a transposed view.
#[derive(Clone, Debug, PartialEq)]
struct Product {
    mnk: [usize; 3],
    layout: &'static str,
}

impl Product {
    fn parse(s: &str) -> Result<Self> {
        let (dims, layout) = match s.split_once(':') {
            Some((dims, "nn")) => (dims, "nn"),
            Some((dims, "tn")) => (dims, "tn"),
            Some((dims, "nt")) => (dims, "nt"),
            Some((_, other)) => bail!("--shape {s}: layout {other} is not nn, tn or nt"),
            None => (s, "nn"),
        };
        let dims: Vec<usize> = dims
            .split('x')
            .map(|d| d.parse())
            .collect::<Result<_, _>>()
            .with_context(|| format!("--shape {s}: expected MxNxK, e.g. 25216x3072x768:nn"))?;
        match dims.as_slice() {
            &[m, n, k] if m * n * k > 0 => Ok(Self {
                mnk: [m, n, k],
                layout,
            }),
            _ => bail!("--shape {s}: expected three positive lengths MxNxK"),
        }
    }
}

impl Matmul {
    fn products(&self) -> Result<Vec<Product>> {
        if self.shape.is_empty() {
            return Ok(vec![Product {
                mnk: [self.size; 3],
                layout: "nn",
            }]);
        }
        self.shape.iter().map(|s| Product::parse(s)).collect()
    }
}

pub fn run(a: &Matmul) -> Result<()> {
    let products = a.products()?;
    let seconds = dispatch(&a.device, a.clone())?;
    let family = super::kernel_choice("REALSYN_MATMUL");
    for (p, seconds) in products.iter().zip(seconds) {
        let median = super::median(seconds.clone());
        let [m, n, k] = p.mnk;
        let flops = 2.0 * (m * n * k) as f64;
        println!(
            "{}",
            serde_json::json!({
                "impl": "realsyn-burn", "mode": "matmul", "backend": a.device, "dtype": a.dtype,
                "m": m, "n": n, "k": k, "layout": p.layout,
                "matmul_family": family, "seconds": seconds, "median_s": median,
                "tflops": flops / median / 1e12,
                "threads": rayon::current_num_threads(),
            })
        );
    }
    Ok(())
}

impl BackendJob for Matmul {
    /// Per product, its timed runs in seconds.
    type Output = Vec<Vec<f64>>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Vec<Vec<f64>>> {
        let operand = |rows: usize, cols: usize| {
            let t = Tensor::<B, 2>::random([rows, cols], Distribution::Normal(0.0, 1.0), &device);
            if self.dtype == "bf16" {
                t.cast(FloatDType::BF16)
            } else {
                t
            }
        };
        let mut all = Vec::new();
        for p in self.products()? {
            let [m, n, k] = p.mnk;
            let lhs = match p.layout {
                "tn" => operand(k, m).transpose(),
                _ => operand(m, k),
            };
            let rhs = match p.layout {
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
            all.push(times);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::Product;

    #[test]
    fn shapes_parse_with_their_layouts() {
        let p = Product::parse("768x3072x25216:tn").unwrap();
        assert_eq!((p.mnk, p.layout), ([768, 3072, 25216], "tn"));
        assert_eq!(Product::parse("8x4x2").unwrap().layout, "nn");
        for bad in ["8x4", "8x4x0", "8x4x2:tt", "ax4x2"] {
            assert!(Product::parse(bad).is_err(), "{bad}");
        }
    }
}
