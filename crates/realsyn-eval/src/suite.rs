//! `realsyn eval --suite ...`: run the paper's evaluation suites (or any dataset in a
//! supported layout) on one model. For each dataset it opens the splits from the data
//! root, computes image features once per split (cached on disk, shared by zero-shot
//! and the linear probe), runs each requested task and writes one CLIP_benchmark
//! result JSON per (dataset, task). A dataset that is not there is reported with
//! where to get it, and the rest runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use realsyn_data::progress::bar;
use realsyn_io::encode_in_batches;
use realsyn_model::common::batch::to_rows;
use realsyn_model::encoder::embed_texts;
use realsyn_model::{ClipTokenizer, DualEncoder};
use serde_json::json;

use crate::cache::FeatureCache;
use crate::datasets::{Format, Kind, LabelledDataset};
use crate::features::{Features, image_features};
use crate::linear_probe::{DEFAULT_GRID, probe};
use crate::registry::{Benchmark, Layout, Metric, OpenError, Registry, Suite, TemplateSet};
use crate::results::{EvalResult, LINEAR_PROBE, RETRIEVAL, ZEROSHOT};
use crate::retrieval::retrieval_recalls;
use crate::zeroshot::classify;
use realsyn_model::zero_shot::zero_shot_classifier;

pub struct SuiteOptions {
    pub data_root: PathBuf,
    pub output: PathBuf,
    pub suites: Vec<Suite>,
    /// Registry names or `NAME=FORMAT:PATH`; `None` = every benchmark of the suites.
    pub datasets: Option<Vec<String>>,
    pub templates: TemplateSet,
    pub batch: usize,
    pub max_train: usize,
    pub max_test: usize,
    /// The L-BFGS iteration cap of each linear-probe fit.
    pub max_iter: usize,
    /// `model` and `pretrained` in the result files.
    pub model_name: String,
    pub pretrained: String,
    /// Identifies the weights for the feature cache.
    pub fingerprint: String,
}

/// What happened to one dataset.
#[derive(Debug)]
pub enum Outcome {
    Done(Vec<EvalResult>),
    Missing { tried: Vec<PathBuf>, source: String },
    Failed(String),
}

/// A user's own dataset, `NAME=FORMAT:PATH`: zero-shot and linear probe for
/// classification formats, retrieval for retrieval formats. Templates are SLIP's when
/// NAME is one of its keys (e.g. `mnist`), else the dataset's own.
pub fn custom_benchmark(spec: &str) -> Result<Benchmark> {
    let (name, rest) = spec
        .split_once('=')
        .with_context(|| format!("{spec:?}: expected a benchmark name or NAME=FORMAT:PATH"))?;
    let (format, path) = rest
        .split_once(':')
        .with_context(|| format!("{spec:?}: expected NAME=FORMAT:PATH"))?;
    let format = Format::parse(format)?;
    let path = std::path::absolute(path)?;
    Ok(Benchmark {
        name: name.to_string(),
        column: name.to_string(),
        suites: if format.is_retrieval() {
            vec![Suite::Retrieval]
        } else {
            vec![Suite::ZeroShot, Suite::LinearProbe]
        },
        metric: if format.is_retrieval() {
            Metric::Recall
        } else {
            Metric::Acc1
        },
        templates: None,
        classnames: None,
        source: format!("{} (given on the command line)", path.display()),
        layouts: vec![Layout {
            format,
            path: path.to_string_lossy().into_owned(),
            classes: None,
            train: "train".into(),
            test: "test".into(),
            captions: None,
            images: None,
        }],
    })
}

/// The benchmarks to run and, for each, the tasks the requested suites ask of it.
pub fn plan(registry: &Registry, opts: &SuiteOptions) -> Result<Vec<(Benchmark, Vec<Suite>)>> {
    let benches: Vec<Benchmark> = match &opts.datasets {
        Some(names) => names
            .iter()
            .map(|n| match registry.get(n) {
                Some(b) => Ok(b.clone()),
                None if n.contains('=') => custom_benchmark(n),
                None => bail!(
                    "unknown benchmark {n:?}: use one of {} or NAME=FORMAT:PATH",
                    registry
                        .benchmarks
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
            .collect::<Result<_>>()?,
        None => registry
            .benchmarks
            .iter()
            .filter(|b| b.suites.iter().any(|s| opts.suites.contains(s)))
            .cloned()
            .collect(),
    };
    let mut planned = Vec::new();
    for b in benches {
        let tasks: Vec<Suite> = b
            .suites
            .iter()
            .copied()
            .filter(|s| opts.suites.contains(s))
            .collect();
        if tasks.is_empty() {
            eprintln!(
                "{:>16} skipped: it belongs to suite(s) {:?}, not requested",
                b.name, b.suites
            );
        } else {
            planned.push((b, tasks));
        }
    }
    Ok(planned)
}

/// Run every planned (benchmark, task) and return what happened to each benchmark.
pub fn run_suite<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    tokenizer: &ClipTokenizer,
    registry: &Registry,
    opts: &SuiteOptions,
    device: &B::Device,
) -> Result<Vec<(String, Outcome)>> {
    std::fs::create_dir_all(&opts.output)
        .with_context(|| format!("creating {}", opts.output.display()))?;
    let cache = FeatureCache::new(&opts.output.join("features"), opts.fingerprint.clone());
    let planned = plan(registry, opts)?;
    if planned.is_empty() {
        bail!("nothing to run: no dataset of the chosen suites");
    }
    eprintln!("evaluating on {} dataset(s)", planned.len());
    let mut outcomes = Vec::new();
    for (bench, tasks) in planned {
        let outcome = match run_benchmark(
            model, tokenizer, registry, opts, &cache, &bench, &tasks, device,
        ) {
            Ok(results) => Outcome::Done(results),
            Err(RunError::Missing { tried, source }) => Outcome::Missing { tried, source },
            Err(RunError::Failed(e)) => Outcome::Failed(format!("{e:#}")),
        };
        match &outcome {
            Outcome::Done(rs) => {
                for r in rs {
                    eprintln!("{:>16} {:<24} {}", r.dataset, r.task, headline(r, &bench));
                }
            }
            Outcome::Missing { tried, source } => eprintln!(
                "{:>16} missing: looked for {}; get it from {source}",
                bench.name,
                tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Outcome::Failed(e) => eprintln!("{:>16} failed: {e}", bench.name),
        }
        outcomes.push((bench.name.clone(), outcome));
    }
    Ok(outcomes)
}

fn headline(r: &EvalResult, bench: &Benchmark) -> String {
    if r.task == RETRIEVAL {
        let g = |k: &str| 100.0 * r.metric(k).unwrap_or(f64::NAN);
        return format!(
            "image->text R@1/5/10 {:.1}/{:.1}/{:.1}  text->image {:.1}/{:.1}/{:.1}",
            g("text_retrieval_recall@1"),
            g("text_retrieval_recall@5"),
            g("text_retrieval_recall@10"),
            g("image_retrieval_recall@1"),
            g("image_retrieval_recall@5"),
            g("image_retrieval_recall@10")
        );
    }
    let key = bench.metric.key();
    format!("{key} {:.2}%", 100.0 * r.metric(key).unwrap_or(f64::NAN))
}

enum RunError {
    Missing { tried: Vec<PathBuf>, source: String },
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for RunError {
    fn from(e: anyhow::Error) -> Self {
        RunError::Failed(e)
    }
}

fn open(bench: &Benchmark, root: &Path, split: &str) -> Result<LabelledDataset, RunError> {
    bench.open(root, split).map_err(|e| match e {
        OpenError::Missing { tried, source } => RunError::Missing { tried, source },
        OpenError::Unreadable(e) => RunError::Failed(e),
    })
}

/// Features of `split` of `data` (from the cache when this model computed them).
#[allow(clippy::too_many_arguments)]
fn features<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    cache: &FeatureCache,
    bench: &Benchmark,
    data: &mut LabelledDataset,
    split: &str,
    limit: usize,
    batch: usize,
    device: &B::Device,
) -> Result<Features> {
    let key = if limit == usize::MAX {
        split.to_string()
    } else {
        format!("{split}-max{limit}")
    };
    if let Some(f) = cache.load(&bench.name, &key) {
        return Ok(f);
    }
    data.limit(limit);
    let total = data.len_hint().map(|n| n.min(limit)).unwrap_or(0) as u64;
    let pb = bar(total, &format!("{} {split}", bench.name));
    let f = image_features(model, data, limit, batch, device, &mut |n| {
        pb.set_position(n as u64)
    })?;
    pb.finish_and_clear();
    if f.is_empty() {
        bail!(
            "{}: no readable sample in the {split} split ({} skipped)",
            bench.name,
            f.skipped
        );
    }
    cache.store(&bench.name, &key, &f)?;
    Ok(f)
}

#[allow(clippy::too_many_arguments)]
fn run_benchmark<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    tokenizer: &ClipTokenizer,
    registry: &Registry,
    opts: &SuiteOptions,
    cache: &FeatureCache,
    bench: &Benchmark,
    tasks: &[Suite],
    device: &B::Device,
) -> Result<Vec<EvalResult>, RunError> {
    let mut test = open(bench, &opts.data_root, "test")?;
    let limit = |n: usize| if n == 0 { usize::MAX } else { n };
    let test_f = features(
        model,
        cache,
        bench,
        &mut test,
        "test",
        limit(opts.max_test),
        opts.batch,
        device,
    )?;
    let result = |task: &str, metrics: serde_json::Value| EvalResult {
        dataset: bench.name.clone(),
        model: opts.model_name.clone(),
        pretrained: opts.pretrained.clone(),
        task: task.to_string(),
        metrics: serde_json::from_value(metrics).expect("an object"),
    };
    let mut out = Vec::new();
    if test.kind == Kind::Retrieval {
        let recalls = retrieval(model, tokenizer, &test_f, opts.batch, device)?;
        out.push(result(RETRIEVAL, serde_json::to_value(recalls).unwrap()));
    } else {
        if test.classnames.is_empty() {
            return Err(RunError::Failed(anyhow::anyhow!(
                "{}: no class names (put a classnames.txt in {})",
                bench.name,
                test.root.display()
            )));
        }
        if tasks
            .iter()
            .any(|t| matches!(t, Suite::ZeroShot | Suite::Robustness))
        {
            let templates = registry
                .templates(bench, opts.templates)
                .or_else(|| (!test.templates.is_empty()).then(|| test.templates.clone()))
                .or_else(|| registry.templates(bench, TemplateSet::Slip))
                .with_context(|| {
                    format!(
                        "{}: no prompt templates (name the dataset after a key of eval/templates/slip.json \
                         or put zeroshot_classification_templates.txt in {})",
                        bench.name,
                        test.root.display()
                    )
                })?;
            let classifier =
                zero_shot_classifier(model, tokenizer, &test.classnames, &templates, device)?;
            let m = classify(&test_f, classifier, device);
            let mut metrics = serde_json::to_value(&m.metrics).unwrap();
            metrics["skipped"] = json!(m.skipped);
            metrics["templates"] = json!(templates.len());
            out.push(result(ZEROSHOT, metrics));
        }
        if tasks.contains(&Suite::LinearProbe) {
            let mut train = open(bench, &opts.data_root, "train")?;
            let train_f = features(
                model,
                cache,
                bench,
                &mut train,
                "train",
                limit(opts.max_train),
                opts.batch,
                device,
            )?;
            let classes = test.classnames.len();
            let r = probe(
                &train_f.split(),
                &test_f.split(),
                classes,
                &DEFAULT_GRID,
                opts.max_iter,
            );
            let mut metrics = serde_json::to_value(&r.test).unwrap();
            metrics["C"] = json!(r.c);
            metrics["val_acc1"] = json!(r.val_accuracy);
            metrics["n_train"] = json!(train_f.len());
            out.push(result(LINEAR_PROBE, metrics));
        }
    }
    for r in &out {
        r.write(&opts.output)?;
    }
    Ok(out)
}

/// Image<->text Recall@1/5/10 of images `f` against all their captions.
fn retrieval<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    tokenizer: &ClipTokenizer,
    f: &Features,
    batch: usize,
    device: &B::Device,
) -> Result<std::collections::BTreeMap<String, f64>> {
    let mut texts = Vec::new();
    let mut text_image = Vec::new();
    for (i, caps) in f.captions.iter().enumerate() {
        for c in caps {
            texts.push(c.as_str());
            text_image.push(i);
        }
    }
    let pb = bar(texts.len() as u64, "captions");
    let text_rows = encode_in_batches(
        texts.iter().copied().map(Ok),
        batch.max(1),
        |chunk| embed_texts(model, tokenizer, chunk, true, device),
        |n| pb.inc(n as u64),
    )?
    .into_vec();
    pb.finish_and_clear();
    let images = Tensor::<B, 2>::from_data(TensorData::new(f.x.clone(), [f.len(), f.dim]), device);
    let text = Tensor::<B, 2>::from_data(TensorData::new(text_rows, [texts.len(), f.dim]), device);
    let (scores, _) = to_rows(images.matmul(text.transpose()));
    Ok(retrieval_recalls(
        &scores,
        f.len(),
        &text_image,
        &[1, 5, 10],
    ))
}
