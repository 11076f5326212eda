//! `realsyn scaling fit`: data scaling laws across runs (paper appendix B.3, Eq. 3).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use realsyn_data::plot::write_chart;
use realsyn_eval::registry::Registry;
use realsyn_eval::report::metric_by_name;
use realsyn_eval::results::read_results;
use realsyn_eval::scaling::{fit, panel};
use realsyn_io::fs::write_atomic;

/// Fit data scaling laws L(x) = a / ln(x - b) + c across runs.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Fit each metric against training samples (millions), report a, b, c with
    /// standard errors, extrapolate, and draw OUTPUT/scaling.{svg,png}.
    ///
    /// Points come from `realsyn eval` result directories (--run 12=out/eval-12m) or
    /// a TSV of `samples_millions<TAB>metric<TAB>value` rows (--points).
    Fit {
        /// SAMPLES_MILLIONS=RESULTS_DIR, one per run.
        #[arg(long)]
        run: Vec<String>,
        #[arg(long)]
        points: Option<PathBuf>,
        /// Metrics: linear-probe-avg, zero-shot-avg, robustness-avg, retrieval-avg or
        /// DATASET:TASK:KEY. Default: the first three for --run, every metric of
        /// the --points file.
        #[arg(long, value_delimiter = ',')]
        metric: Option<Vec<String>>,
        /// Extrapolate to this many million samples.
        #[arg(long, default_value_t = 100.0)]
        extrapolate: f64,
        #[arg(long)]
        output: PathBuf,
    },
    /// The data-scaling sweep of a run recipe (realsyn run's format): build its
    /// dataset once, then for each size a seeded random subset of its variant
    /// (nested: each size adds samples to the smaller ones), trained and evaluated
    /// as the recipe says, and the law fitted across them with its plot. Each run
    /// resumes like `realsyn run`. Under DIR/sweep: N-SAMPLES/{data,train,eval},
    /// fit/ (scaling.json, scaling.svg/png).
    Sweep {
        /// The run recipe.
        #[arg(long)]
        recipe: PathBuf,
        /// Dataset sizes in samples (at least 3), e.g. 150,300,450.
        #[arg(long, value_delimiter = ',', required = true)]
        sizes: Vec<usize>,
        /// Metrics to fit (as `scaling fit --metric`), e.g.
        /// fashion-mnist:linear_probe:acc1.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "linear-probe-avg,zero-shot-avg"
        )]
        metric: Vec<String>,
        /// Seed of the subsets.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Samples per shard of the subsets.
        #[arg(long, default_value_t = 10_000)]
        samples_per_shard: usize,
        /// The run folder instead of the recipe's [run].dir.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Extrapolate the fit to this many million samples.
        #[arg(long, default_value_t = 100.0)]
        extrapolate: f64,
    },
}

fn sweep(
    recipe: &std::path::Path,
    sizes: &[usize],
    metric: &[String],
    seed: u64,
    per_shard: usize,
    dir: Option<PathBuf>,
    extrapolate: f64,
) -> Result<()> {
    if sizes.len() < 3 {
        bail!("--sizes: a 3-parameter law needs at least 3 dataset sizes");
    }
    let l = super::run::load(recipe, dir)?;
    std::fs::create_dir_all(&l.dir)?;
    let pattern = l.build()?;
    let root = l.dir.join("sweep");
    let mut fit_args: Vec<String> = vec!["scaling".into(), "fit".into()];
    for &n in sizes {
        let run = root.join(format!("{n}-samples"));
        let data = run.join("data");
        if !data.join("sizes.json").exists() {
            let w = realsyn_data::wds::write_subset(&pattern, n, seed, per_shard, &data)?;
            eprintln!("sweep: {w} samples of {pattern} in {}", data.display());
        }
        let sub = realsyn_builder::write::stage::dir_pattern(&data)?;
        let summary = l.train(&run.join("train"), &sub)?;
        let eval = run.join("eval");
        if !l.evaluate(&eval, &summary, &sub)? {
            bail!(
                "{} has no [eval] section: there is nothing to fit",
                recipe.display()
            );
        }
        fit_args.extend([
            "--run".into(),
            format!("{}={}", n as f64 / 1e6, eval.display()),
        ]);
    }
    fit_args.extend([
        "--metric".into(),
        metric.join(","),
        "--extrapolate".into(),
        extrapolate.to_string(),
        "--output".into(),
        root.join("fit").display().to_string(),
    ]);
    super::run::realsyn(&fit_args)
}

pub fn run(args: Args) -> Result<()> {
    if let Sub::Sweep {
        recipe,
        sizes,
        metric,
        seed,
        samples_per_shard,
        dir,
        extrapolate,
    } = &args.command
    {
        return sweep(
            recipe,
            sizes,
            metric,
            *seed,
            *samples_per_shard,
            dir.clone(),
            *extrapolate,
        );
    }
    let Sub::Fit {
        run,
        points,
        metric,
        extrapolate,
        output,
    } = args.command
    else {
        unreachable!("sweep returned above")
    };
    let registry = Registry::builtin();
    let wanted = |m: &str| {
        metric
            .as_ref()
            .is_none_or(|list| list.iter().any(|w| w == m))
    };
    let run_metrics: Vec<String> = metric.clone().unwrap_or_else(|| {
        ["linear-probe-avg", "zero-shot-avg", "robustness-avg"]
            .map(String::from)
            .to_vec()
    });
    let mut data: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &run {
        let (x, dir) = r
            .split_once('=')
            .with_context(|| format!("--run {r:?}: expected SAMPLES=DIR"))?;
        let x: f64 = x
            .parse()
            .with_context(|| format!("--run {r:?}: {x:?} is not a number of millions"))?;
        let results = read_results(std::path::Path::new(dir))?;
        for m in &run_metrics {
            if let Some(v) = metric_by_name(&registry, m, &results) {
                data.entry(m.clone()).or_default().push((x, v));
            }
        }
    }
    if let Some(p) = &points {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let f: Vec<&str> = line.split('\t').collect();
            let parsed = (f.len() == 3)
                .then(|| Some((f[0].parse::<f64>().ok()?, f[2].parse::<f64>().ok()?)))
                .flatten();
            let Some((x, v)) = parsed else {
                bail!(
                    "{}:{}: expected samples_millions<TAB>metric<TAB>value",
                    p.display(),
                    i + 1
                );
            };
            if wanted(f[1]) {
                data.entry(f[1].to_string()).or_default().push((x, v));
            }
        }
    }
    if data.is_empty() {
        bail!("no points: give --run SAMPLES=DIR (realsyn eval results) or --points FILE");
    }
    std::fs::create_dir_all(&output)?;
    let mut panels = Vec::new();
    let mut report = serde_json::Map::new();
    for (m, pts) in &data {
        let (xs, ys): (Vec<f64>, Vec<f64>) = pts.iter().copied().unzip();
        let f = match fit(&xs, &ys) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{m}: not fitted: {e}");
                continue;
            }
        };
        let (pred, se) = f.predict(extrapolate);
        let pm = |v: Option<f64>| v.map(|s| format!(" ± {s:.3}")).unwrap_or_default();
        let se_abc = f.stderr.map(|s| s.map(Some)).unwrap_or([None; 3]);
        println!(
            "{m}: L(x) = {:.3}{} / ln(x - {:.3}{}) + {:.3}{}   ({} runs, rms residual {:.4}); at {extrapolate}M: {:.4}{}",
            f.law.a,
            pm(se_abc[0]),
            f.law.b,
            pm(se_abc[1]),
            f.law.c,
            pm(se_abc[2]),
            f.n,
            (f.rss / f.n as f64).sqrt(),
            pred,
            pm(se)
        );
        report.insert(
            m.clone(),
            serde_json::json!({"fit": f, "points": pts, "extrapolate": {"x": extrapolate, "value": pred, "stderr": se}}),
        );
        panels.push(panel(m, &xs, &ys, &f, extrapolate));
    }
    write_atomic(
        &output.join("scaling.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    write_chart(&output.join("scaling"), &panels)?;
    println!(
        "wrote {0}/scaling.json, {0}/scaling.svg and {0}/scaling.png",
        output.display()
    );
    Ok(())
}
