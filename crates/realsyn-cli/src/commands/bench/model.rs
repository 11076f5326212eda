//! CLIP on a Burn backend: encode-image, encode-text and the training step on random
//! inputs, and the evaluator's feature extraction on a real dataset. The peer is
//! `benches/model_bench.py` (PyTorch open_clip); `benches/model.sh` runs both.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use realsyn_model::{Clip, ClipConfig};
use realsyn_runtime::host_profile::{DEFAULT_HZ, HostProfile, HostProfiler};
use realsyn_runtime::{BackendJob, dispatch};
use realsyn_train::distributed::{LaunchEnv, ProcessGroup};
use realsyn_train::optim::{AdamW, AdamWConfig, clamp_logit_scale, track_gradients};
use realsyn_train::recipe::Precision;
use realsyn_train::step::{DeviceSlice, StepPlan, distributed_step};

/// Which model, where, how many times.
#[derive(clap::Args, Clone)]
pub struct ModelRun {
    /// A model config name (ViT-B-32, EVA02-B-16, ...) or a config .json.
    #[arg(long, default_value = "ViT-B-32")]
    arch: String,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// cpu (flex), ndarray (build with --features ndarray), cuda[:N] (--features cuda),
    /// wgpu (--features wgpu: Vulkan, e.g. lavapipe on the CPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Untimed runs first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Sample the host threads' CPU time over the timed runs and write
    /// DIR/host-profile.txt (by thread, crate or library, function), .folded (for
    /// flamegraph.pl, inferno, speedscope) and .svg (a flame graph); the thread
    /// running the steps is also sampled on the wall clock, waits included
    /// (host-profile-wall.folded and .svg: which op's loop it waits on, or whether
    /// it waits for the GPU). Works on machines without perf; a stripped binary
    /// shows no names of its own.
    #[arg(long, value_name = "DIR")]
    profile_host: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub struct TrainStep {
    #[command(flatten)]
    pub run: ModelRun,
    /// f32, or amp_bf16 (bf16 forward/backward, f32 master weights, as open_clip's
    /// --precision amp_bf16 and model_bench.py --amp).
    #[arg(long, default_value = "f32", value_parser = ["f32", "amp_bf16"])]
    precision: String,
    /// Recompute each transformer block in the backward pass instead of keeping its
    /// activations (open_clip's --grad-checkpointing).
    #[arg(long)]
    grad_checkpointing: bool,
}

impl TrainStep {
    /// The trainer's step as these flags ask for it, one micro-batch.
    pub fn plan(&self) -> StepPlan {
        StepPlan {
            accum: 1,
            precision: match self.precision.as_str() {
                "amp_bf16" => Precision::AmpBf16,
                _ => Precision::F32,
            },
            grad_checkpointing: self.grad_checkpointing,
            // The device decides: the trainer's step packs where AdamW runs foreach.
            pack_grads: false,
        }
    }
}

#[derive(clap::Args, Clone)]
pub struct Features {
    #[command(flatten)]
    pub run: ModelRun,
    /// A wds export root (ROOT/test/*.tar), e.g. from `realsyn dataset fashion-mnist`.
    #[arg(long)]
    pub shards: PathBuf,
    /// Images encoded per timed run.
    #[arg(long, default_value_t = 256)]
    pub max_images: usize,
}

/// What is timed.
#[derive(Clone)]
pub enum What {
    EncodeImage,
    EncodeText,
    TrainStep(StepPlan),
    Features { root: PathBuf, max_images: usize },
}

impl What {
    fn name(&self) -> &'static str {
        match self {
            What::EncodeImage => "encode-image",
            What::EncodeText => "encode-text",
            What::TrainStep(_) => "train-step",
            What::Features { .. } => "features",
        }
    }
}

pub fn run(what: What, r: ModelRun) -> Result<()> {
    let launch = LaunchEnv::from_env()?;
    let (rank, world) = (launch.rank, launch.world);
    let Timed { seconds, profile } = dispatch(
        &launch.device_for_rank(&r.device),
        BenchJob {
            what: what.clone(),
            run: r.clone(),
        },
    )?;
    if rank != 0 {
        return Ok(());
    }
    let host_profile = match (&profile, &r.profile_host) {
        (Some(p), Some(dir)) => {
            p.write(dir, 30)?;
            eprintln!("{}", p.table(20));
            eprintln!(
                "host profile written to {0}/host-profile.{{txt,folded,svg}} and the calling \
                 thread's wall clock to {0}/host-profile-wall.{{folded,svg}}",
                dir.display()
            );
            Some(serde_json::json!({
                "dir": dir, "cpu_s": p.cpu_s, "wall_s": p.wall_s, "samples": p.samples(),
                "by_thread": p.by_thread().into_iter().take(8).collect::<Vec<_>>(),
                "self_by_group": p.self_by_group().into_iter().take(12).collect::<Vec<_>>(),
                "caller_wall_by_place":
                    p.caller_wall_by_place().into_iter().take(12).collect::<Vec<_>>(),
            }))
        }
        _ => None,
    };
    let median = super::median(seconds.clone());
    let (bf16, images) = match &what {
        What::TrainStep(p) => (p.precision == Precision::AmpBf16, None),
        What::Features { max_images, .. } => (false, Some(*max_images)),
        _ => (false, None),
    };
    let checkpointing = matches!(&what, What::TrainStep(p) if p.grad_checkpointing);
    // The kernels chosen at run time on the CubeCL backends (none on the CPU's).
    let kernel = |var| (r.device != "cpu").then(|| super::kernel_choice(var));
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn-burn",
            "backend": if bf16 { format!("{}-bf16", r.device) } else { r.device.clone() },
            "mode": what.name(), "arch": r.arch,
            "batch_size": r.batch_size, "seconds": seconds, "median_s": median,
            "items_per_s": images.unwrap_or(r.batch_size) as f64 / median,
            "threads": rayon::current_num_threads(),
            "world": world,
            "images": images,
            "grad_checkpointing": checkpointing,
            "matmul_family": kernel("REALSYN_MATMUL"),
            "attention_kernel": kernel("REALSYN_ATTENTION"),
            "peak_rss_mib": peak_rss_mib(),
            "host_profile": host_profile,
        })
    );
    Ok(())
}

/// The process's peak resident memory in MiB since [`reset_peak_rss`] (Linux's
/// `VmHWM`); `None` where /proc is absent.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Start the peak-memory count again from the current resident size (writing 5 to
/// `clear_refs`), so model set-up before the timed loop does not count.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct BenchJob {
    what: What,
    run: ModelRun,
}

/// The timed runs' seconds, and the host profile over them when asked for.
struct Timed {
    seconds: Vec<f64>,
    profile: Option<HostProfile>,
}

/// `warmup` untimed calls of `one_run(i)`, then `iters` timed ones, profiled
/// together when `--profile-host` is given.
fn time_runs(a: &ModelRun, mut one_run: impl FnMut(usize) -> Result<()>) -> Result<Timed> {
    let mut seconds = Vec::new();
    let mut profiler = None;
    for i in 0..a.warmup + a.iters {
        if i == a.warmup && a.profile_host.is_some() {
            profiler = Some(HostProfiler::start(DEFAULT_HZ)?);
        }
        let start = Instant::now();
        one_run(i)?;
        if i >= a.warmup {
            seconds.push(start.elapsed().as_secs_f64());
        }
    }
    let profile = profiler.map(HostProfiler::finish).transpose()?;
    Ok(Timed { seconds, profile })
}

impl BackendJob for BenchJob {
    type Output = Timed;

    fn run<B: Backend>(self, device: B::Device) -> Result<Timed> {
        let a = self.run;
        let cfg = ClipConfig::from_name_or_path(&a.arch)?;
        let s = cfg.vision_cfg.image_size;
        match self.what {
            What::EncodeImage | What::EncodeText => {
                let image = matches!(self.what, What::EncodeImage);
                let model = Clip::<B>::new(&cfg, &device);
                reset_peak_rss();
                time_runs(&a, |_| {
                    let out = if image {
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
                    settle::<B>(&device)
                })
            }
            What::Features { root, max_images } => {
                let data = realsyn_eval::LabelledDataset::open(&root, "test")?;
                let model = Clip::<B>::new(&cfg, &device);
                reset_peak_rss();
                time_runs(&a, |i| {
                    let limit = if i < a.warmup {
                        a.batch_size
                    } else {
                        max_images
                    };
                    let f = realsyn_eval::image_features(
                        &model,
                        &data,
                        limit,
                        a.batch_size,
                        &device,
                        &mut |_| {},
                    )?;
                    anyhow::ensure!(
                        f.len() == limit,
                        "only {} images in {}/test",
                        f.len(),
                        root.display()
                    );
                    settle::<B>(&device)
                })
            }
            What::TrainStep(plan) => {
                // The trainer's own step: forward, InfoNCE, backward, AdamW, clamp.
                let mut group = ProcessGroup::join(LaunchEnv::from_env()?, "realsyn bench")?;
                let model = group.broadcast_parameters(Clip::<Autodiff<B>>::new(&cfg, &device))?;
                let collectives = group.use_device::<B>(&device)?;
                if group.world() > 1 && group.is_leader() {
                    eprintln!("{} ranks, collectives: {collectives}", group.world());
                }
                let mut model = track_gradients(model)?;
                let mut optim = AdamW::for_device(
                    AdamWConfig {
                        weight_decay: 0.2,
                        beta1: 0.9,
                        beta2: 0.98,
                        eps: 1e-6,
                    },
                    &a.device,
                );
                reset_peak_rss();
                time_runs(&a, |_| {
                    let images = Tensor::random(
                        [a.batch_size, 3, s, s],
                        Distribution::Normal(0.0, 1.0),
                        &device,
                    );
                    let tokens = random_tokens::<Autodiff<B>>(&cfg, a.batch_size, &device);
                    let slice = DeviceSlice {
                        model: optim.weights_in(&model, plan.precision.compute_dtype())?,
                        images,
                        tokens,
                    };
                    let plan = StepPlan {
                        pack_grads: optim.foreach,
                        ..plan
                    };
                    let out = distributed_step(vec![slice], plan, &mut group)?;
                    // The trainer reads the norm every step (divergence, logging).
                    let _ = out.grads.global_norm();
                    optim.update(&mut model, &out.grads, 1e-3, 0.9)?;
                    model = clamp_logit_scale(model.clone());
                    settle::<B>(&device)
                })
            }
        }
    }
}

/// Wait for every kernel of the run to finish: reading one result waits only for
/// the kernels it needs, and CubeCL's profiler (`CUBECL_DEBUG_OPTION=profile`)
/// writes its table of the kernels since the last sync only at a sync.
fn settle<B: Backend>(device: &B::Device) -> Result<()> {
    B::sync(device).map_err(|e| anyhow::anyhow!("waiting for the device: {e:?}"))
}

/// Rows shaped like real captions: SOT, ~20 ids, EOT, padding; SOT and EOT are the
/// vocabulary's last two ids, as CLIP's (49406, 49407).
fn random_tokens<B: Backend>(cfg: &ClipConfig, n: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let ctx = cfg.text_cfg.context_length;
    let vocab = cfg.text_cfg.vocab_size;
    let len = 20.min(ctx - 2);
    let words = 49000.min(vocab - 3);
    let mut rows = vec![0i32; n * ctx];
    for r in 0..n {
        rows[r * ctx] = (vocab - 2) as i32;
        for j in 1..=len {
            rows[r * ctx + j] = ((r * 7919 + j * 104729) % words) as i32 + 1;
        }
        rows[r * ctx + len + 1] = (vocab - 1) as i32;
    }
    Tensor::from_data(TensorData::new(rows, [n, ctx]), device)
}
