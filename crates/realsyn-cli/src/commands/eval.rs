//! `realsyn eval`: evaluate a model on the paper's benchmarks (or your own sets) as
//! CLIP_benchmark does, and print the results beside the paper's tables.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use realsyn_eval::cache::model_fingerprint;
use realsyn_eval::registry::{Registry, Suite, TemplateSet};
use realsyn_eval::report::render;
use realsyn_eval::results::read_results;
use realsyn_eval::suite::{Outcome, SuiteOptions, run_suite};

use realsyn_runtime::{BackendJob, create_model_and_transforms, dispatch};

/// Evaluate a CLIP model: zero-shot, linear probe, retrieval, robustness.
///
/// Examples:
///   realsyn eval --model ckpt/ --suite all --data-root /data/eval --output out/eval
///   realsyn eval --model m.safetensors --suite zero-shot --datasets cifar10,imagenet1k \
///       --data-root /data/eval --output out/eval
///   realsyn eval --model m.safetensors --suite zero-shot,linear-probe \
///       --datasets mnist=imagefolder:/data/mnist --output out/mnist
///   realsyn eval report out/eval=RealSyn15M-ours
///
/// Each dataset is looked for under --data-root in the layouts of `realsyn eval list`
/// (CLIP_benchmark's wds exports, or the official releases); a missing one is reported
/// with where to get it and the rest runs. Image features are computed once per split
/// and cached in OUTPUT/features/ (a re-run reuses them). One CLIP_benchmark result JSON
/// is written per (dataset, task) into OUTPUT.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Print results (directories of result JSONs, DIR or DIR=LABEL) in the layout of
    /// the paper's Tables 1-4 and 9-11, the paper's rows beside ours.
    Report {
        #[arg(required = true)]
        results: Vec<String>,
        /// Also write the report to this file.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List the benchmarks: suites, metric, layouts read, where to get them, and
    /// (with --data-root) which are present.
    List {
        #[arg(long)]
        data_root: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Weights: realsyn checkpoint, open_clip .safetensors/.pt, or HF directory.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Architecture when the weights do not say it (ViT-B-32, EVA02-B-16, config JSON, ...).
    #[arg(long)]
    arch: Option<String>,
    /// Suites to run (comma-separated): zero-shot, linear-probe, retrieval, robustness, all.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    suite: Vec<String>,
    /// Only these datasets (comma-separated): registry names, or NAME=FORMAT:PATH for
    /// your own (FORMAT: wds, imagefolder, jsonl, wds-retrieval, karpathy, ...).
    #[arg(long, value_delimiter = ',')]
    datasets: Option<Vec<String>>,
    /// Where the benchmarks are (see `realsyn eval list`).
    #[arg(long, default_value = ".")]
    data_root: PathBuf,
    /// Directory for the result JSONs and the feature cache.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Prompt templates: slip (the paper's), clip-benchmark, or dataset (the data's own).
    #[arg(long, value_enum, default_value = "slip")]
    templates: TemplateSet,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Linear probe: use at most this many training images (0 = all).
    #[arg(long, default_value_t = 0)]
    max_train: usize,
    /// Use at most this many test images (0 = all).
    #[arg(long, default_value_t = 0)]
    max_test: usize,
    /// L-BFGS iterations per linear-probe fit.
    #[arg(long, default_value_t = 1000)]
    max_iter: usize,
    /// Read the registry from this eval/ directory instead of the built-in copy.
    #[arg(long)]
    eval_dir: Option<PathBuf>,
}

fn parse_suites(names: &[String]) -> Result<Vec<Suite>> {
    let mut out = Vec::new();
    for n in names {
        let add: &[Suite] = match n.as_str() {
            "all" => &[
                Suite::LinearProbe,
                Suite::ZeroShot,
                Suite::Retrieval,
                Suite::Robustness,
            ],
            "zero-shot" | "zeroshot" => &[Suite::ZeroShot],
            "linear-probe" => &[Suite::LinearProbe],
            "retrieval" => &[Suite::Retrieval],
            "robustness" => &[Suite::Robustness],
            other => bail!(
                "unknown suite {other:?}: zero-shot, linear-probe, retrieval, robustness or all"
            ),
        };
        for s in add {
            if !out.contains(s) {
                out.push(*s);
            }
        }
    }
    Ok(out)
}

struct SuiteJob {
    model: PathBuf,
    arch: Option<String>,
    registry: Registry,
    opts: SuiteOptions,
}

impl BackendJob for SuiteJob {
    type Output = Vec<(String, Outcome)>;
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output> {
        let loaded = create_model_and_transforms::<B>(&self.model, self.arch.as_deref(), &device)?;
        run_suite(
            &loaded.model,
            &loaded.tokenizer()?,
            &self.registry,
            &self.opts,
            &device,
        )
    }
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Some(Sub::Report { results, output }) => report(&results, output),
        Some(Sub::List { data_root }) => list(data_root),
        None => run_suites(args.run),
    }
}

fn run_suites(a: RunArgs) -> Result<()> {
    let Some(model) = a.model else {
        bail!("--model is required (or use `realsyn eval report` / `realsyn eval list`)")
    };
    let Some(output) = a.output else {
        bail!("--output DIR is required")
    };
    let registry = match &a.eval_dir {
        Some(d) => Registry::load(d)?,
        None => Registry::builtin(),
    };
    let opts = SuiteOptions {
        data_root: a.data_root,
        output: output.clone(),
        suites: parse_suites(&a.suite)?,
        datasets: a.datasets,
        templates: a.templates,
        batch: a.batch_size,
        max_train: a.max_train,
        max_test: a.max_test,
        max_iter: a.max_iter,
        model_name: a.arch.clone().unwrap_or_else(|| "realsyn".into()),
        pretrained: model.display().to_string(),
        fingerprint: model_fingerprint(&model, &format!("{:?}", a.arch))?,
    };
    eprintln!("evaluating {}", model.display());
    let outcomes = dispatch(
        &a.device,
        SuiteJob {
            model,
            arch: a.arch,
            registry,
            opts,
        },
    )?;
    let (mut done, mut missing, mut failed) = (0, Vec::new(), Vec::new());
    for (name, o) in &outcomes {
        match o {
            Outcome::Done(_) => done += 1,
            Outcome::Missing { .. } => missing.push(name.as_str()),
            Outcome::Failed(_) => failed.push(name.as_str()),
        }
    }
    println!(
        "{done} dataset(s) evaluated, {} missing{}, {} failed{}; results in {}",
        missing.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(" ({})", missing.join(", "))
        },
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        },
        output.display()
    );
    let results = read_results(&output)?;
    print!(
        "{}",
        render(
            &Registry::builtin(),
            &[(output.display().to_string(), results)]
        )
    );
    if done == 0 {
        bail!("no dataset could be evaluated");
    }
    Ok(())
}

fn report(dirs: &[String], output: Option<PathBuf>) -> Result<()> {
    let mut runs = Vec::new();
    for d in dirs {
        let (dir, label) = match d.split_once('=') {
            Some((dir, label)) => (dir.to_string(), label.to_string()),
            None => (d.clone(), d.clone()),
        };
        runs.push((label, read_results(std::path::Path::new(&dir))?));
    }
    let text = render(&Registry::builtin(), &runs);
    print!("{text}");
    if let Some(out) = output {
        realsyn_io::fs::write_atomic(&out, text.as_bytes())?;
    }
    Ok(())
}

fn list(data_root: Option<PathBuf>) -> Result<()> {
    let reg = Registry::builtin();
    for b in &reg.benchmarks {
        let suites: Vec<String> = b.suites.iter().map(|s| format!("{s:?}")).collect();
        let present = data_root.as_ref().map(|root| {
            b.layouts
                .iter()
                .find(|l| root.join(&l.path).exists())
                .map(|l| format!("present ({})", l.path))
                .unwrap_or_else(|| "missing".into())
        });
        println!(
            "{:<16} {:<28} {:<22} {}",
            b.name,
            suites.join(","),
            b.metric.key(),
            present.unwrap_or_default()
        );
        for l in &b.layouts {
            println!("{:<16}   {:?} at DATA_ROOT/{}", "", l.format, l.path);
        }
        println!("{:<16}   get it: {}", "", b.source);
    }
    Ok(())
}
