//! `realsyn bench`: model throughput on a backend, for docs/performance.md. The peer
//! measurement (PyTorch open_clip) is `benches/model_bench.py`; `benches/model.sh`
//! runs both in one go and prints the ratios.

use std::time::Instant;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use realsyn_model::loss::contrastive_loss;
use realsyn_model::{Clip, ClipConfig};

use crate::device::{BackendJob, dispatch};

/// Time CLIP on random inputs: `encode-image` (inference, no autodiff) or
/// `train-step` (both towers forward, contrastive loss, backward, AdamW step).
/// Prints one JSON line per run.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// encode-image | encode-text | train-step
    #[arg(long, default_value = "encode-image")]
    mode: String,
    #[arg(long, default_value = "ViT-B-32")]
    arch: String,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// cpu (flex), ndarray (build with --features ndarray), cuda[:N] (--features cuda)
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: Args) -> Result<()> {
    let seconds = dispatch(&args.device.clone(), BenchJob(args.clone()))?;
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn-burn", "backend": args.device, "mode": args.mode, "arch": args.arch,
            "batch_size": args.batch_size, "seconds": seconds, "median_s": median,
            "items_per_s": args.batch_size as f64 / median,
            "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

struct BenchJob(Args);

impl BackendJob for BenchJob {
    type Output = Vec<f64>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Vec<f64>> {
        let a = self.0;
        let cfg = ClipConfig::from_name_or_path(&a.arch)?;
        let s = cfg.vision_cfg.image_size;
        let mut times = Vec::new();
        match a.mode.as_str() {
            "encode-image" | "encode-text" => {
                let model = Clip::<B>::new(&cfg, &device);
                for i in 0..a.warmup + a.iters {
                    let start = Instant::now();
                    let out = if a.mode == "encode-image" {
                        let images = Tensor::<B, 4>::random(
                            [a.batch_size, 3, s, s],
                            Distribution::Normal(0.0, 1.0),
                            &device,
                        );
                        model.encode_image(images)
                    } else {
                        model.encode_text(random_tokens::<B>(&cfg, a.batch_size, &device))
                    };
                    let _ = out.into_data(); // forces execution on lazy backends
                    if i >= a.warmup {
                        times.push(start.elapsed().as_secs_f64());
                    }
                }
            }
            "train-step" => {
                let mut model = Clip::<Autodiff<B>>::new(&cfg, &device);
                let mut optim = AdamWConfig::new()
                    .with_beta_1(0.9)
                    .with_beta_2(0.98)
                    .with_epsilon(1e-6)
                    .with_weight_decay(0.2)
                    .init();
                for i in 0..a.warmup + a.iters {
                    let start = Instant::now();
                    let images = Tensor::random(
                        [a.batch_size, 3, s, s],
                        Distribution::Normal(0.0, 1.0),
                        &device,
                    );
                    let tokens = random_tokens::<Autodiff<B>>(&cfg, a.batch_size, &device);
                    let loss = contrastive_loss(model.forward(images, tokens).logits_per_image());
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    model = optim.step(1e-3, model, grads);
                    let _ = model.logit_scale.val().into_data();
                    if i >= a.warmup {
                        times.push(start.elapsed().as_secs_f64());
                    }
                }
            }
            other => {
                anyhow::bail!("unknown --mode {other:?}: encode-image, encode-text or train-step")
            }
        }
        Ok(times)
    }
}

/// Rows shaped like real captions: SOT, ~20 ids, EOT, padding.
fn random_tokens<B: Backend>(cfg: &ClipConfig, n: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let ctx = cfg.text_cfg.context_length;
    let len = 20.min(ctx - 2);
    let mut rows = vec![0i32; n * ctx];
    for r in 0..n {
        rows[r * ctx] = 49406;
        for j in 1..=len {
            rows[r * ctx + j] = ((r * 7919 + j * 104729) % 49000) as i32 + 1;
        }
        rows[r * ctx + len + 1] = 49407;
    }
    Tensor::from_data(TensorData::new(rows, [n, ctx]), device)
}
