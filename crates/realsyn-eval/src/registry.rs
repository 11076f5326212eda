//! The benchmark registry: the paper's 20 classification sets, 5 robustness sets and
//! 2 retrieval sets, read from `eval/benchmarks.toml`, with class names and prompt
//! templates from `eval/classnames/` and `eval/templates/`. The files are data, kept
//! in the repository and compiled into the binary so it runs from anywhere;
//! `Registry::load(dir)` reads an edited copy instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::datasets::{ClassNames, Format, LabelledDataset, OpenOptions};

const BENCHMARKS: &str = include_str!("../../../eval/benchmarks.toml");
const SLIP_TEMPLATES: &str = include_str!("../../../eval/templates/slip.json");
const CLIP_BENCHMARK_TEMPLATES: &str = include_str!("../../../eval/templates/clip_benchmark.json");
/// The evaluation suites of `realsyn eval --suite`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    LinearProbe,
    ZeroShot,
    Retrieval,
    Robustness,
}

/// The headline metric of a benchmark (paper Table 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Acc1,
    MeanPerClassRecall,
    RocAuc,
    /// Retrieval: Recall@1/5/10 both ways.
    Recall,
}

impl Metric {
    /// The key of this metric in a CLIP_benchmark result's `metrics`.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Acc1 => "acc1",
            Metric::MeanPerClassRecall => "mean_per_class_recall",
            Metric::RocAuc => "roc_auc",
            Metric::Recall => "image_retrieval_recall@1",
        }
    }
}

/// One place a benchmark may be stored under the data root.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub format: Format,
    /// Relative to the data root.
    pub path: String,
    /// Class-name rule for `imagefolder` (see `ClassNames::parse`).
    #[serde(default)]
    pub classes: Option<String>,
    #[serde(default = "default_train")]
    pub train: String,
    #[serde(default = "default_test")]
    pub test: String,
    /// `karpathy`: the caption file and the image folder, relative to `path`.
    #[serde(default)]
    pub captions: Option<String>,
    #[serde(default)]
    pub images: Option<String>,
}

fn default_train() -> String {
    "train".into()
}
fn default_test() -> String {
    "test".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    pub name: String,
    /// Column header in the paper's tables.
    pub column: String,
    pub suites: Vec<Suite>,
    pub metric: Metric,
    /// Key into the template files; defaults to `name`.
    #[serde(default)]
    pub templates: Option<String>,
    /// Class names fixed by the benchmark (overrides the data's).
    #[serde(default)]
    pub classnames: Option<Vec<String>>,
    /// Where users get the data.
    pub source: String,
    pub layouts: Vec<Layout>,
}

/// Which template set zero-shot uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TemplateSet {
    /// SLIP's (the paper's).
    Slip,
    /// CLIP_benchmark's English templates.
    ClipBenchmark,
    /// The templates shipped with the data (zeroshot_classification_templates.txt).
    Dataset,
}

#[derive(Deserialize)]
struct File {
    benchmark: Vec<Benchmark>,
}

pub struct Registry {
    pub benchmarks: Vec<Benchmark>,
    slip: BTreeMap<String, Vec<String>>,
    clip_benchmark: BTreeMap<String, Vec<String>>,
}

impl Registry {
    /// The registry compiled into the binary.
    pub fn builtin() -> Self {
        Self::parse(BENCHMARKS, SLIP_TEMPLATES, CLIP_BENCHMARK_TEMPLATES)
            .expect("eval/benchmarks.toml and eval/templates/*.json are valid")
    }

    /// The registry of an `eval/` directory (an edited copy of the bundled one).
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |p: &str| {
            std::fs::read_to_string(dir.join(p))
                .with_context(|| format!("reading {}/{p}", dir.display()))
        };
        Self::parse(
            &read("benchmarks.toml")?,
            &read("templates/slip.json")?,
            &read("templates/clip_benchmark.json")?,
        )
    }

    fn parse(benchmarks: &str, slip: &str, clip_benchmark: &str) -> Result<Self> {
        let file: File = toml::from_str(benchmarks).context("parsing benchmarks.toml")?;
        let reg = Self {
            benchmarks: file.benchmark,
            slip: serde_json::from_str(slip).context("parsing templates/slip.json")?,
            clip_benchmark: serde_json::from_str(clip_benchmark)
                .context("parsing templates/clip_benchmark.json")?,
        };
        for b in &reg.benchmarks {
            let key = b.templates.as_deref().unwrap_or(&b.name);
            if b.suites
                .iter()
                .any(|s| matches!(s, Suite::ZeroShot | Suite::Robustness))
                && !reg.slip.contains_key(key)
            {
                bail!("benchmark {}: no SLIP templates under {key:?}", b.name);
            }
        }
        Ok(reg)
    }

    pub fn get(&self, name: &str) -> Option<&Benchmark> {
        self.benchmarks.iter().find(|b| b.name == name)
    }

    /// The benchmarks of `suite`, in the paper's column order.
    pub fn suite(&self, suite: Suite) -> Vec<&Benchmark> {
        self.benchmarks
            .iter()
            .filter(|b| b.suites.contains(&suite))
            .collect()
    }

    /// Templates of `bench` from `set`, or `None` when the set has none for it.
    pub fn templates(&self, bench: &Benchmark, set: TemplateSet) -> Option<Vec<String>> {
        let key = bench.templates.as_deref().unwrap_or(&bench.name);
        match set {
            TemplateSet::Slip => self.slip.get(key).cloned(),
            TemplateSet::ClipBenchmark => self.clip_benchmark.get(key).cloned(),
            TemplateSet::Dataset => None,
        }
    }
}

/// Why a benchmark could not be opened: not under the data root (with where to get
/// it), or present but unreadable.
pub enum OpenError {
    Missing { tried: Vec<PathBuf>, source: String },
    Unreadable(anyhow::Error),
}

impl Benchmark {
    /// Open `split` ("train" or "test") from the first layout present under `data_root`.
    pub fn open(&self, data_root: &Path, split: &str) -> Result<LabelledDataset, OpenError> {
        let mut tried = Vec::new();
        for layout in &self.layouts {
            let root = data_root.join(&layout.path);
            if !root.exists() {
                tried.push(root);
                continue;
            }
            let classes = match layout.classes.as_deref() {
                Some(spec) => ClassNames::parse(spec).map_err(OpenError::Unreadable)?,
                None => ClassNames::Dirs,
            };
            let split_name = if split == "train" {
                &layout.train
            } else {
                &layout.test
            };
            let opts = OpenOptions {
                format: layout.format,
                split: split_name,
                classes: &classes,
                captions: layout.captions.as_deref(),
                images: layout.images.as_deref(),
            };
            let mut ds = LabelledDataset::open_as(&root, &opts)
                .with_context(|| {
                    format!(
                        "{} ({:?} layout at {})",
                        self.name,
                        layout.format,
                        root.display()
                    )
                })
                .map_err(OpenError::Unreadable)?;
            if let Some(names) = &self.classnames {
                ds.classnames = names.clone();
            }
            return Ok(ds);
        }
        Err(OpenError::Missing {
            tried,
            source: self.source.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::imagenet_classes::{imagenet_classnames, imagenet_subset, imagenet_wnids};

    #[test]
    fn the_bundled_registry_has_the_papers_benchmarks() {
        let reg = Registry::builtin();
        assert_eq!(reg.suite(Suite::LinearProbe).len(), 20);
        assert_eq!(reg.suite(Suite::ZeroShot).len(), 20);
        assert_eq!(reg.suite(Suite::Robustness).len(), 5);
        assert_eq!(reg.suite(Suite::Retrieval).len(), 2);
        assert_eq!(imagenet_classnames().len(), 1000);
        assert_eq!(imagenet_wnids().len(), 1000);
        assert_eq!(imagenet_subset("imagenet-a").len(), 200);
        let memes = reg.get("hateful_memes").unwrap();
        assert_eq!(memes.metric, Metric::RocAuc);
        let slip = reg
            .templates(reg.get("imagenet-r").unwrap(), TemplateSet::Slip)
            .unwrap();
        assert_eq!(slip.len(), 7, "robustness uses SLIP's ImageNet templates");
    }
}
