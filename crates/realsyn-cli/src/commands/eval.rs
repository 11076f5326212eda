//! `realsyn eval`: evaluate a model as CLIP_benchmark does.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_data::fs::write_atomic;
use realsyn_eval::linear_probe::{DEFAULT_GRID, ProbeResult, Split, image_features, probe};
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
        let data = LabelledDataset::open(&self.data, "test")?;
        let (xtr, ytr) =
            image_features(&model, &data, "train", self.max_train, self.batch, &device)?;
        let (xte, yte) = image_features(&model, &data, "test", self.max_test, self.batch, &device)?;
        let dim = xtr.len() / ytr.len().max(1);
        let train = Split {
            x: &xtr,
            y: &ytr,
            dim,
        };
        let test = Split {
            x: &xte,
            y: &yte,
            dim,
        };
        let r = probe(&train, &test, data.classnames.len(), &DEFAULT_GRID, 1000);
        Ok((r, ytr.len(), yte.len()))
    }
}

fn run_probe(job: ProbeJob, device: &str, output: Option<PathBuf>) -> Result<()> {
    let (model, data) = (job.model.clone(), job.data.clone());
    let (r, ntr, nte) = dispatch(device, job)?;
    println!(
        "linear probe top-1 {:.2}% (C = {}, validation {:.2}%; {ntr} train, {nte} test images)",
        100.0 * r.test_accuracy,
        r.c,
        100.0 * r.val_accuracy
    );
    if let Some(out) = output {
        let json = serde_json::json!({
            "dataset": data.file_name().map(|n| n.to_string_lossy().into_owned()),
            "model": model.display().to_string(),
            "pretrained": model.display().to_string(),
            "task": "linear_probe",
            "metrics": {"acc1": r.test_accuracy, "C": r.c, "val_acc1": r.val_accuracy},
        });
        write_atomic(&out, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
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
    let (model, arch, data, batch_size, device, output) = match args.task {
        Task::Zeroshot {
            model,
            arch,
            data,
            batch_size,
            device,
            output,
        } => (model, arch, data, batch_size, device, output),
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
            return run_probe(
                ProbeJob {
                    model,
                    arch,
                    data,
                    max_train,
                    max_test,
                    batch: batch_size,
                },
                &device,
                output,
            );
        }
    };
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
