//! Recipes: one TOML file per run, every field overridable from the command line
//! (`--set train.lr=5e-4`). The resolved recipe is saved beside the checkpoints.
//!
//! Unknown fields are errors, so a typo in a recipe or an override never silently
//! trains with a default.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

use crate::schedule::{Schedule, ScheduleKind};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub model: ModelSection,
    pub data: DataSection,
    #[serde(default)]
    pub train: TrainSection,
    pub output: OutputSection,
    #[serde(default)]
    pub zeroshot: ZeroShotSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A shipped open_clip config name (`ViT-B-32`) or a config JSON path.
    pub arch: String,
    /// Weights to start from; random init (open_clip's scheme) when absent.
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Shards: brace patterns, several sources joined by `::`.
    pub train: String,
    /// Samples per epoch; read from `sizes.json` when absent.
    #[serde(default)]
    pub num_samples: Option<u64>,
    /// Candidate-text keys (see `realsyn_data::texts`); one is drawn per sample per step.
    #[serde(default = "default_text_keys")]
    pub text_keys: Vec<String>,
    #[serde(default = "default_workers")]
    pub workers: usize,
    #[serde(default = "default_shuffle_buffer")]
    pub shuffle_buffer: usize,
    #[serde(default)]
    pub resampled: bool,
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Fixed data streams the global batch is cut into (0 = one per rank). A run
    /// reproduces and resumes on any number of ranks that divides it; set it to,
    /// e.g., 16 to move a job between 1, 2, 4, 8 and 16 GPUs.
    #[serde(default)]
    pub streams: usize,
}

/// Missing fields take the paper's values (Table 7).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    pub epochs: u64,
    /// Global batch: samples per optimiser step over all devices and micro-batches.
    pub batch_size: usize,
    /// Micro-batches per step (open_clip's `--accum-freq`); the loss stays exact.
    pub accum_freq: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub schedule: ScheduleKind,
    pub pct_start: f64,
    pub div_factor: f64,
    pub final_div_factor: f64,
    pub cycle_momentum: bool,
    pub warmup_steps: u64,
    /// Clip the global gradient norm to this; 0 = off.
    pub grad_clip_norm: f64,
    pub seed: u64,
    /// Stop after this many steps (0 = run all epochs); the schedule still spans all.
    pub max_steps: u64,
    /// `cpu`, `ndarray`, `cuda`, `cuda:N`, or a comma-separated list of one kind
    /// (`cuda:0,cuda:1,...`) for data parallelism in one process.
    pub device: String,
    /// `f32`, or `amp_bf16` (open_clip's `--precision amp_bf16`): bf16 forward and
    /// backward, f32 master weights, optimiser state, loss and logit scale.
    pub precision: Precision,
    /// Keep only each transformer block's input in the forward pass and recompute the
    /// blocks in the backward pass (open_clip's `--grad-checkpointing`): activation
    /// memory of one block instead of all, for about one more forward pass per step.
    pub grad_checkpointing: bool,
    /// torch's `foreach` AdamW: each weight-decay group updated as one flat buffer,
    /// and each backward pass's gradients packed into one buffer, so a step's
    /// optimiser, sums and all-reduce are a few kernels instead of a few per
    /// parameter. Unset: on for GPUs, off on the CPU (as torch chooses); the
    /// results are the same either way.
    pub foreach: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    AmpBf16,
}

impl Precision {
    /// The type the forward and backward passes compute in (the master weights,
    /// the optimiser's state, the loss and the logit scale stay f32).
    pub fn compute_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::AmpBf16 => FloatDType::BF16,
        }
    }
}

impl Default for TrainSection {
    /// The paper's Table 7.
    fn default() -> Self {
        Self {
            epochs: 32,
            batch_size: 4096,
            accum_freq: 1,
            lr: 1e-3,
            weight_decay: 0.2,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            schedule: ScheduleKind::Onecycle,
            pct_start: 0.1,
            div_factor: 25.0,
            final_div_factor: 1e4,
            cycle_momentum: false,
            warmup_steps: 0,
            grad_clip_norm: 0.0,
            seed: 0,
            max_steps: 0,
            device: "cpu".into(),
            precision: Precision::F32,
            grad_checkpointing: false,
            foreach: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    pub dir: PathBuf,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    #[serde(default = "default_log_every")]
    pub log_every: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroShotSection {
    /// A CLIP_benchmark-style WebDataset directory (`test/*.tar` with `cls`,
    /// `classnames.txt`, `zeroshot_classification_templates.txt`).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Evaluate every N steps (0 = only at the end, when `data` is set).
    #[serde(default)]
    pub every: u64,
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
}

fn default_text_keys() -> Vec<String> {
    realsyn_data::texts::DEFAULT_TEXT_KEYS
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
fn default_shuffle_buffer() -> usize {
    5000
}
fn default_prefetch() -> usize {
    2
}
fn default_checkpoint_every() -> u64 {
    1000
}
fn default_keep() -> usize {
    3
}
fn default_log_every() -> u64 {
    10
}
fn default_eval_batch() -> usize {
    256
}

impl Recipe {
    /// Read `path` and apply `KEY=VALUE` overrides (dotted keys, TOML values; a
    /// value that is not valid TOML is taken as a string).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let table = realsyn_io::recipe::load_with_overrides(path, overrides)?;
        let recipe: Recipe = table
            .try_into()
            .with_context(|| format!("recipe {} (after overrides)", path.display()))?;
        recipe.validate()?;
        Ok(recipe)
    }

    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        if t.batch_size == 0 || t.accum_freq == 0 || t.batch_size % t.accum_freq != 0 {
            bail!(
                "train.batch_size ({}) must be a positive multiple of train.accum_freq ({})",
                t.batch_size,
                t.accum_freq
            );
        }
        if t.epochs == 0 {
            bail!("train.epochs must be at least 1");
        }
        if !(0.0..1.0).contains(&t.pct_start) {
            bail!("train.pct_start must be in [0, 1)");
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    pub fn schedule(&self, total_steps: u64) -> Schedule {
        let t = &self.train;
        Schedule {
            kind: t.schedule,
            max_lr: t.lr,
            total_steps,
            pct_start: t.pct_start,
            div_factor: t.div_factor,
            final_div_factor: t.final_div_factor,
            warmup_steps: t.warmup_steps,
            cycle_momentum: t.cycle_momentum,
            base_momentum: 0.85,
            max_momentum: 0.95,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[model]
arch = "ViT-B-32"
[data]
train = "/data/{00000..00009}.tar"
[output]
dir = "runs/x"
"#;

    #[test]
    fn defaults_are_the_papers_and_overrides_apply() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, MINIMAL).unwrap();
        let r = Recipe::load(&p, &[]).unwrap();
        assert_eq!(
            (r.train.lr, r.train.weight_decay, r.train.eps),
            (1e-3, 0.2, 1e-6)
        );
        assert_eq!(
            (
                r.train.beta1,
                r.train.beta2,
                r.train.batch_size,
                r.train.epochs
            ),
            (0.9, 0.98, 4096, 32)
        );
        assert_eq!(r.train.schedule, ScheduleKind::Onecycle);
        let r = Recipe::load(
            &p,
            &[
                "train.lr=5e-4".into(),
                "data.text_keys=[\"txt\"]".into(),
                "output.dir=/tmp/run 2".into(),
            ],
        )
        .unwrap();
        assert_eq!(r.train.lr, 5e-4);
        assert_eq!(r.data.text_keys, ["txt"]);
        assert_eq!(r.output.dir, PathBuf::from("/tmp/run 2"));
        // Round trip through the saved form.
        let saved: Recipe = toml::from_str(&r.to_toml().unwrap()).unwrap();
        assert_eq!(saved.train.lr, 5e-4);
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, MINIMAL).unwrap();
        let e = Recipe::load(&p, &["train.lrr=1".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("lrr"), "{e:#}");
        assert!(
            Recipe::load(
                &p,
                &["train.batch_size=10".into(), "train.accum_freq=3".into()]
            )
            .is_err()
        );
        assert!(Recipe::load(&p, &["train.lr".into()]).is_err());
    }

    #[test]
    fn deeply_nested_toml_is_refused_before_parsing() {
        let bomb = format!(
            "[train]\nx = {}1{}\n",
            "[".repeat(450_000),
            "]".repeat(450_000)
        );
        let e = realsyn_io::recipe::check_nesting(&bomb).unwrap_err();
        assert!(format!("{e}").contains("deeper than 64"), "{e}");
        let fine = "[train]\nx = [[1, 2], {a = [3]}] # [[[[ in a comment\ns = \"[[[[\"\n";
        realsyn_io::recipe::check_nesting(fine).unwrap();
        assert!(toml::from_str::<toml::Table>(fine).is_ok());
    }
}
