//! `realsyn eval`: evaluate a model as CLIP_benchmark does.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_data::fs::write_atomic;
use realsyn_eval::{LabelledDataset, ZeroShotMetrics, zero_shot_eval};
use realsyn_model::{Clip, ClipTokenizer};

use crate::device::{BackendJob, dispatch};

/// Evaluate a CLIP model.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(clap::Subcommand)]
enum Task {
    /// Zero-shot classification on a CLIP_benchmark-style WebDataset directory
    /// (test/*.tar with cls + image, classnames.txt, zeroshot_classification_templates.txt).
    Zeroshot {
        /// Weights: realsyn checkpoint, open_clip .safetensors/.pt, or HF directory.
        #[arg(long)]
        model: PathBuf,
        /// Architecture when the weights do not say it (ViT-B-32, config JSON, ...).
        #[arg(long)]
        arch: Option<String>,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Write CLIP_benchmark's result JSON here.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

struct Job {
    model: PathBuf,
    arch: Option<String>,
    data: PathBuf,
    batch: usize,
}

impl BackendJob for Job {
    type Output = ZeroShotMetrics;
    fn run<B: Backend>(self, device: B::Device) -> Result<ZeroShotMetrics> {
        let model = Clip::<B>::load(&self.model, self.arch.as_deref(), &device)?;
        let tok = ClipTokenizer::new().with_context_length(model.config.text_cfg.context_length)?;
        let data = LabelledDataset::open(&self.data, "test")?;
        zero_shot_eval(&model, &tok, &data, self.batch, &device)
    }
}

pub fn run(args: Args) -> Result<()> {
    let Task::Zeroshot {
        model,
        arch,
        data,
        batch_size,
        device,
        output,
    } = args.task;
    let m = dispatch(
        &device,
        Job {
            model: model.clone(),
            arch,
            data: data.clone(),
            batch: batch_size,
        },
    )?;
    println!(
        "zero-shot top-1 {:.2}%  top-5 {:.2}%  mean per-class recall {:.2}%  ({} images, {} skipped)",
        100.0 * m.acc1,
        100.0 * m.acc5,
        100.0 * m.mean_per_class_recall,
        m.n,
        m.skipped
    );
    if let Some(out) = output {
        let json = serde_json::json!({
            "dataset": data.file_name().map(|n| n.to_string_lossy().into_owned()),
            "model": model.display().to_string(),
            "pretrained": model.display().to_string(),
            "task": "zeroshot_classification",
            "metrics": {"acc1": m.acc1, "acc5": m.acc5, "mean_per_class_recall": m.mean_per_class_recall},
        });
        write_atomic(&out, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}
