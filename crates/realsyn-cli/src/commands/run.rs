//! `realsyn run RECIPE.toml`: documents -> dataset -> checkpoint -> eval results ->
//! report, from one recipe. Each step is the realsyn subcommand a user would type,
//! run as a child process (as a scheduler would run it), skipped when its output is
//! complete and resumed when it is not.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Run a whole recipe: build the dataset, train on one of its variants, evaluate
/// the checkpoint, and print the report beside the paper's tables.
///
/// Under [run].dir: store/ (the builder's store, dataset/VARIANT/ shards inside),
/// train/ (the training run), eval/ (result JSONs) and report.md. Rerunning skips
/// finished steps (a store whose funnel.json and variant sizes.json exist, a run
/// with summary.json, an eval with done.json), resumes a killed build (finished
/// parts are kept) or training (`--resume latest`).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  realsyn run recipes/runs/gimp-tiny.toml")]
pub struct Args {
    /// The recipe: [run] dir; [build] variant and args (flags of `realsyn build
    /// all`, without --store) or recipe (a build recipe) and set (its overrides);
    /// `{dir}` anywhere stands for the run's folder and `{cache}` for realsyn's cache of
    /// registry data ($REALSYN_CACHE, else ~/.cache/realsyn); [train] recipe and set;
    /// [eval] args and label;
    /// optional [[prepare]] commands (args: a realsyn command line, creates: the
    /// path that marks it done) run first.
    recipe: PathBuf,
    /// Put the run here instead of [run].dir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Check the recipe (its sections, variant and training recipe) and print the
    /// commands the run would start, without running them.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRecipe {
    run: RunSection,
    build: BuildSection,
    train: TrainSection,
    #[serde(default)]
    prepare: Vec<Prepare>,
    eval: Option<EvalSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSection {
    dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildSection {
    /// The dataset variant trained on (all, balanced-CAP, random-CAP).
    variant: String,
    /// Flags of `realsyn build all` (without --store).
    #[serde(default)]
    args: Vec<String>,
    /// A build recipe (TOML) instead of flags, with `set` overrides (KEY=VALUE).
    recipe: Option<PathBuf>,
    #[serde(default)]
    set: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainSection {
    /// A training recipe; data.train and output.dir are set by the run.
    recipe: PathBuf,
    #[serde(default)]
    set: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Prepare {
    args: Vec<String>,
    /// Skipped when this path exists.
    creates: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalSection {
    /// Flags of `realsyn eval` (without --model and --output).
    args: Vec<String>,
    label: Option<String>,
}

impl RunRecipe {
    /// `{dir}` in any command line, path or override means the run's folder
    /// ([run].dir, or `--dir`), so inputs a recipe prepares move with the run;
    /// `{cache}` means realsyn's cache of registry data (`$REALSYN_CACHE`, else
    /// `~/.cache/realsyn`), where `scripts/setup-system.sh` puts it.
    fn place_in(&mut self, dir: &Path) {
        let d = dir.display().to_string();
        let cache = realsyn_io::fs::cache_dir().display().to_string();
        let expand = move |v: &str| v.replace("{dir}", &d).replace("{cache}", &cache);
        let sub = |v: &mut String| *v = expand(v);
        let sub_path = |p: &mut PathBuf| *p = PathBuf::from(expand(&p.to_string_lossy()));
        self.build.args.iter_mut().for_each(sub);
        self.build.set.iter_mut().for_each(sub);
        if let Some(p) = &mut self.build.recipe {
            sub_path(p);
        }
        self.train.set.iter_mut().for_each(sub);
        sub_path(&mut self.train.recipe);
        for p in &mut self.prepare {
            p.args.iter_mut().for_each(sub);
            sub_path(&mut p.creates);
        }
        if let Some(e) = &mut self.eval {
            e.args.iter_mut().for_each(sub);
        }
    }
}

pub fn realsyn(args: &[String]) -> Result<()> {
    let exe = std::env::current_exe()?;
    eprintln!("run: realsyn {}", args.join(" "));
    let status = Command::new(&exe)
        .args(args)
        .status()
        .with_context(|| format!("starting {}", exe.display()))?;
    if !status.success() {
        bail!(
            "`realsyn {}` failed ({status}); fix it and rerun: finished steps are kept",
            args.join(" ")
        );
    }
    Ok(())
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A loaded run recipe and the folder of its run.
pub struct Loaded {
    r: RunRecipe,
    pub dir: PathBuf,
    pub variant: realsyn_builder::write::Variant,
    /// Print the steps instead of running them.
    pub dry_run: bool,
}

pub fn load(recipe: &Path, dir: Option<PathBuf>) -> Result<Loaded> {
    let text =
        std::fs::read_to_string(recipe).with_context(|| format!("reading {}", recipe.display()))?;
    realsyn_io::recipe::check_nesting(&text)
        .with_context(|| format!("{} is not a run recipe", recipe.display()))?;
    let mut r: RunRecipe = toml::from_str(&text)
        .with_context(|| format!("{} is not a run recipe", recipe.display()))?;
    let dir = dir.unwrap_or_else(|| r.run.dir.clone());
    r.place_in(&dir);
    let variant = r.build.variant.parse()?;
    if r.build.args.iter().any(|a| a == "--store") {
        bail!(
            "[build] args must not give --store: the store is {}/store",
            dir.display()
        );
    }
    // The training recipe must load, with the fields the run sets.
    realsyn_train::Recipe::load(
        &r.train.recipe,
        &[
            vec![
                "data.train=\"check\"".to_string(),
                "output.dir=\"check\"".to_string(),
            ],
            r.train.set.clone(),
        ]
        .concat(),
    )
    .with_context(|| format!("[train] recipe of {}", recipe.display()))?;
    Ok(Loaded {
        r,
        dir,
        variant,
        dry_run: false,
    })
}

impl Loaded {
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// The [[prepare]] commands whose output is missing (inputs the build or the
    /// evaluation reads).
    pub fn prepare(&self) -> Result<()> {
        for p in &self.r.prepare {
            if !p.creates.exists() {
                self.step(&p.args)?;
            }
        }
        Ok(())
    }

    /// Run one realsyn command line (or print it, in a dry run).
    fn step(&self, args: &[String]) -> Result<()> {
        if self.dry_run {
            println!("realsyn {}", args.join(" "));
            return Ok(());
        }
        realsyn(args)
    }

    /// Documents -> dataset (and its report); the variant's shard pattern.
    pub fn build(&self) -> Result<String> {
        self.prepare()?;
        let store = self.store();
        let sizes =
            realsyn_builder::write::stage::variant_dir(&store, self.variant).join("sizes.json");
        if store.join("funnel.json").exists() && sizes.exists() {
            eprintln!("run: build done ({}), skipped", sizes.display());
        } else {
            let mut a = vec!["build".into(), "all".into(), "--store".into(), s(&store)];
            if let Some(recipe) = &self.r.build.recipe {
                a.extend(["--recipe".into(), s(recipe)]);
            }
            for kv in &self.r.build.set {
                a.extend(["--set".into(), kv.clone()]);
            }
            a.extend(self.r.build.args.iter().cloned());
            self.step(&a)?;
        }
        if !store.join("report/report.json").exists() {
            self.step(&["build".into(), "report".into(), "--store".into(), s(&store)])?;
        }
        if self.dry_run {
            let dir = realsyn_builder::write::stage::variant_dir(&store, self.variant);
            return Ok(format!("{}/{{00000..N}}.tar", dir.display()));
        }
        realsyn_builder::write::stage::shard_pattern(&store, self.variant)
    }

    /// Dataset -> checkpoint in `train_dir`; its summary.json.
    pub fn train(&self, train_dir: &Path, pattern: &str) -> Result<serde_json::Value> {
        let summary_path = train_dir.join("summary.json");
        if summary_path.exists() {
            eprintln!("run: training done ({}), skipped", summary_path.display());
        } else {
            let mut a = vec![
                "train".into(),
                "--recipe".into(),
                s(&self.r.train.recipe),
                "--set".into(),
                format!("data.train={}", toml_string(pattern)),
                "--set".into(),
                format!("output.dir={}", toml_string(&s(train_dir))),
            ];
            for kv in &self.r.train.set {
                a.extend(["--set".into(), kv.clone()]);
            }
            if train_dir.join("checkpoints/latest").exists() {
                a.extend(["--resume".into(), "latest".into()]);
            }
            self.step(&a)?;
        }
        if self.dry_run {
            let last = train_dir.join("checkpoints/step_N");
            return Ok(serde_json::json!({ "checkpoint": last }));
        }
        Ok(serde_json::from_slice(&std::fs::read(&summary_path)?)?)
    }

    /// Checkpoint -> result JSONs in `eval_dir`; false when the recipe has no [eval].
    pub fn evaluate(
        &self,
        eval_dir: &Path,
        summary: &serde_json::Value,
        pattern: &str,
    ) -> Result<bool> {
        let Some(eval) = &self.r.eval else {
            return Ok(false);
        };
        let checkpoint = PathBuf::from(
            summary["checkpoint"]
                .as_str()
                .context("summary.json names no checkpoint")?,
        );
        let done = eval_dir.join("done.json");
        if done.exists() {
            eprintln!("run: evaluation done ({}), skipped", done.display());
            return Ok(true);
        }
        let mut a = vec![
            "eval".into(),
            "--model".into(),
            s(&checkpoint.join("model.safetensors")),
            "--output".into(),
            s(eval_dir),
        ];
        a.extend(eval.args.iter().cloned());
        self.step(&a)?;
        if self.dry_run {
            return Ok(true);
        }
        realsyn_io::fs::write_atomic(
            &done,
            &serde_json::to_vec_pretty(&serde_json::json!({
                "checkpoint": checkpoint,
                "dataset": pattern,
            }))?,
        )?;
        Ok(true)
    }
}

pub fn run(args: Args) -> Result<()> {
    let mut l = load(&args.recipe, args.dir)?;
    l.dry_run = args.dry_run;
    if !l.dry_run {
        std::fs::create_dir_all(&l.dir)?;
    }
    let (dir, variant, store) = (l.dir.clone(), l.variant, l.store());
    let pattern = l.build()?;
    let summary = l.train(&dir.join("train"), &pattern)?;
    let eval_dir = dir.join("eval");
    if !l.evaluate(&eval_dir, &summary, &pattern)? {
        return Ok(());
    }
    if l.dry_run {
        println!(
            "realsyn eval report {}=... --output {}",
            s(&eval_dir),
            s(&dir.join("report.md"))
        );
        return Ok(());
    }
    // Results -> report beside the paper's tables.
    let label =
        l.r.eval
            .as_ref()
            .and_then(|e| e.label.clone())
            .unwrap_or_else(|| variant.name());
    realsyn(&[
        "eval".into(),
        "report".into(),
        format!("{}={label}", s(&eval_dir)),
        "--output".into(),
        s(&dir.join("report.md")),
    ])?;
    let report = dir.join("report.md");
    let mut md = std::fs::read_to_string(&report).unwrap_or_default();
    md.push_str(&run_report(&store, variant, &eval_dir, &summary)?);
    realsyn_io::fs::write_atomic(&report, md.as_bytes())?;
    eprintln!("run: report in {}", report.display());
    Ok(())
}

/// This run's own numbers: the dataset's funnel and balance, the training, and
/// every result JSON (the paper's tables above only show the paper's benchmarks).
fn run_report(
    store: &Path,
    variant: realsyn_builder::write::Variant,
    eval_dir: &Path,
    train: &serde_json::Value,
) -> Result<String> {
    let mut md = String::from("\n\n## This run\n\n### Dataset (documents -> pairs)\n\n");
    md.push_str(
        "![image-text cosines](store/report/cosines.svg) ![image-cluster sizes](store/report/clusters.svg) \
         ![text lengths](store/report/lengths.svg)\n\n",
    );
    md.push_str(&std::fs::read_to_string(store.join("funnel.md")).unwrap_or_default());
    if let Ok((_, b)) = realsyn_builder::balance::stage::open(store) {
        md.push_str(&format!(
            "\nBalance: band {} dropped {:.1}% of {} pairs (the paper's 0.51..0.61 would drop {:.1}% on \
             these cosines); {} image clusters.\n\n| variant | samples | largest cluster | random baseline's largest |\n|---|---:|---:|---:|\n",
            b.settings.band,
            100.0 * b.applied.dropped_fraction,
            b.pairs,
            100.0 * b.paper_band.dropped_fraction,
            b.clusters
        ));
        for v in &b.variants {
            md.push_str(&format!(
                "| balanced-{} | {} | {} | {} |\n",
                v.cap, v.samples, v.sizes.max, v.random_sizes.max
            ));
        }
    }
    md.push_str(&format!(
        "\nTrained on `{variant}`: {} steps, last loss {:.4}.\n\n### Results\n\n| dataset | task | metric | value |\n|---|---|---|---:|\n",
        train["steps"], train["last_loss"].as_f64().unwrap_or(f64::NAN)
    ));
    let mut files: Vec<PathBuf> = std::fs::read_dir(eval_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("done.json"))
        .collect();
    files.sort();
    for f in files {
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&f)?)?;
        for (k, v) in r["metrics"].as_object().into_iter().flatten() {
            if let Some(x) = v
                .as_f64()
                .filter(|_| !matches!(k.as_str(), "n" | "skipped" | "templates"))
            {
                md.push_str(&format!(
                    "| {} | {} | {k} | {x:.4} |\n",
                    r["dataset"].as_str().unwrap_or("?"),
                    r["task"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    Ok(md)
}

/// A TOML string literal (for --set values).
fn toml_string(v: &str) -> String {
    toml::Value::String(v.to_string()).to_string()
}
