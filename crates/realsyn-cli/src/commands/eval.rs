//! `realsyn eval`: evaluate a model as CLIP_benchmark does.

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_data::fs::write_atomic;
use realsyn_eval::linear_probe::{DEFAULT_GRID, ProbeResult, probe};
use realsyn_eval::{Features, LabelledDataset, ZeroShotMetrics, image_features, zero_shot_eval};
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
    /// Linear probe on frozen image features (CLIP-paper protocol: C chosen on a
    /// validation split of train, refit, scored on test): DIR/train and DIR/test in
    /// CLIP_benchmark's layout.
    LinearProbe {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        arch: Option<String>,
        #[arg(long)]
        data: PathBuf,
        /// Use at most this many training / test samples.
        #[arg(long, default_value_t = 50_000)]
        max_train: usize,
        #[arg(long, default_value_t = 10_000)]
        max_test: usize,
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

struct ZeroShotJob {
    model: PathBuf,
    arch: Option<String>,
    data: PathBuf,
    batch: usize,
}

impl BackendJob for ZeroShotJob {
    type Output = ZeroShotMetrics;
    fn run<B: Backend>(self, device: B::Device) -> Result<ZeroShotMetrics> {
        let model = Clip::<B>::load(&self.model, self.arch.as_deref(), &device)?;
        let tok = ClipTokenizer::new().with_context_length(model.config.text_cfg.context_length)?;
        let data = LabelledDataset::open(&self.data, "test")?;
        zero_shot_eval(&model, &tok, &data, self.batch, &device)
    }
}

struct ProbeJob {
    model: PathBuf,
    arch: Option<String>,
    data: PathBuf,
    max_train: usize,
    max_test: usize,
    batch: usize,
}

impl BackendJob for ProbeJob {
    type Output = (ProbeResult, usize, usize);
    fn run<B: Backend>(self, device: B::Device) -> Result<(ProbeResult, usize, usize)> {
        let model = Clip::<B>::load(&self.model, self.arch.as_deref(), &device)?;
        let features = |split: &str, limit: usize| -> Result<(Features, usize)> {
            let data = LabelledDataset::open(&self.data, split)?;
            let classes = data.classnames.len();
            Ok((
                image_features(&model, &data, limit, self.batch, &device)?,
                classes,
            ))
        };
        let (train, classes) = features("train", self.max_train)?;
        let (test, _) = features("test", self.max_test)?;
        let r = probe(&train.split(), &test.split(), classes, &DEFAULT_GRID, 1000);
        Ok((r, train.y.len(), test.y.len()))
    }
}

pub fn run(args: Args) -> Result<()> {
    match args.task {
        Task::Zeroshot {
            model,
            arch,
            data,
            batch_size,
            device,
            output,
        } => {
            let job = ZeroShotJob {
                model: model.clone(),
                arch,
                data: data.clone(),
                batch: batch_size,
            };
            let m = dispatch(&device, job)?;
            println!(
                "zero-shot top-1 {:.2}%  top-5 {:.2}%  mean per-class recall {:.2}%  ({} images, {} skipped)",
                100.0 * m.acc1,
                100.0 * m.acc5,
                100.0 * m.mean_per_class_recall,
                m.n,
                m.skipped
            );
            let metrics = serde_json::json!({
                "acc1": m.acc1, "acc5": m.acc5, "mean_per_class_recall": m.mean_per_class_recall,
            });
            write_result(output, &model, &data, "zeroshot_classification", metrics)
        }
        Task::LinearProbe {
            model,
            arch,
            data,
            max_train,
            max_test,
            batch_size,
            device,
            output,
        } => {
            let job = ProbeJob {
                model: model.clone(),
                arch,
                data: data.clone(),
                max_train,
                max_test,
                batch: batch_size,
            };
            let (r, ntr, nte) = dispatch(&device, job)?;
            println!(
                "linear probe top-1 {:.2}% (C = {}, validation {:.2}%; {ntr} train, {nte} test images)",
                100.0 * r.test_accuracy,
                r.c,
                100.0 * r.val_accuracy
            );
            let metrics =
                serde_json::json!({"acc1": r.test_accuracy, "C": r.c, "val_acc1": r.val_accuracy});
            write_result(output, &model, &data, "linear_probe", metrics)
        }
    }
}

/// CLIP_benchmark's result JSON, when `--output` is given.
fn write_result(
    output: Option<PathBuf>,
    model: &Path,
    data: &Path,
    task: &str,
    metrics: serde_json::Value,
) -> Result<()> {
    let Some(out) = output else { return Ok(()) };
    let json = serde_json::json!({
        "dataset": data.file_name().map(|n| n.to_string_lossy().into_owned()),
        "model": model.display().to_string(),
        "pretrained": model.display().to_string(),
        "task": task,
        "metrics": metrics,
    });
    write_atomic(&out, serde_json::to_string_pretty(&json)?.as_bytes())
}
