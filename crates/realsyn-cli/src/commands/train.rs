//! `realsyn train`: CLIP pre-training from a recipe.

use std::path::PathBuf;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use realsyn_train::distributed::LaunchEnv;
use realsyn_train::{Recipe, TrainSummary, train};

use realsyn_runtime::{MultiDeviceJob, dispatch_devices};

/// Train CLIP on WebDataset shards as a recipe describes (recipes/*.toml).
///
/// Each step draws one of every image's candidate texts at random (by default the
/// released RealSyn layout: txt, json.text2, json.text3, json.syn_text). The run
/// directory (output.dir) receives config.toml (the resolved recipe),
/// checkpoints/step_N/, metrics.jsonl, tensorboard/, summary.json and curves.svg.
///
/// Many GPUs or nodes: start one process per device with torchrun or Slurm's srun;
/// each reads RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT (or SLURM_PROCID,
/// SLURM_NTASKS, SLURM_LOCALID and the node list), trains on its share of the
/// global batch and joins the others for the all-gather and all-reduce; rank 0
/// writes the run directory. `--device cuda` becomes cuda:LOCAL_RANK.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  realsyn train --recipe recipes/fashion-mnist.toml\n  \
realsyn train --recipe recipes/realsyn15m-vit-b-32.toml --set train.accum_freq=4   # 4096 as 4 x 1024, loss still over 4096\n  \
realsyn train --recipe recipes/fashion-mnist.toml --resume latest\n  \
torchrun --nproc-per-node 8 --no-python realsyn train --recipe recipes/realsyn15m-vit-b-32.toml --device cuda\n  \
srun --ntasks-per-node 8 realsyn train --recipe R --device cuda   # see recipes/slurm/\n\n\
Watch it: tensorboard --logdir OUTPUT_DIR/tensorboard"
)]
pub struct Args {
    /// Recipe TOML.
    #[arg(long)]
    recipe: PathBuf,
    /// Override a recipe field, e.g. --set train.lr=5e-4 --set data.text_keys='["txt"]' (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Continue a run: `latest` (its newest checkpoint) or a checkpoint directory.
    #[arg(long)]
    resume: Option<String>,
    /// cpu, ndarray, cuda, cuda:N, or a list for data parallelism: cuda:0,cuda:1,...
    /// (overrides train.device).
    #[arg(long)]
    device: Option<String>,
}

struct Job<'a> {
    recipe: &'a Recipe,
    resume: Option<&'a str>,
}

impl MultiDeviceJob for Job<'_> {
    type Output = TrainSummary;
    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<TrainSummary> {
        train::<Autodiff<B>>(self.recipe, self.resume, &devices)
    }
}

pub fn run(args: Args) -> Result<()> {
    let mut overrides = args.overrides.clone();
    if let Some(d) = &args.device {
        overrides.push(format!("train.device=\"{d}\""));
    }
    let recipe = Recipe::load(&args.recipe, &overrides)?;
    let launch = LaunchEnv::from_env()?;
    let summary = dispatch_devices(
        &launch.device_for_rank(&recipe.train.device),
        Job {
            recipe: &recipe,
            resume: args.resume.as_deref(),
        },
    )?;
    if launch.rank != 0 {
        return Ok(());
    }
    eprintln!(
        "trained {} steps, last loss {:.4}, {:.1} samples/s; checkpoint {}",
        summary.steps,
        summary.last_loss,
        summary.samples_per_s,
        summary.checkpoint.display()
    );
    if !summary.skips.is_empty() {
        eprintln!("skipped samples: {:?}", summary.skips);
    }
    if let Some(z) = &summary.zeroshot {
        eprintln!(
            "zero-shot: top-1 {:.2}%, top-5 {:.2}%, mean per-class recall {:.2}% on {} images",
            100.0 * z.acc1,
            100.0 * z.acc5,
            100.0 * z.mean_per_class_recall,
            z.n
        );
    }
    Ok(())
}
