//! `realsyn-fuzz`: run the fuzz targets and print a table of what each campaign did.
//!
//!     cargo run --release -p realsyn-fuzz -- --execs 1000000            # every target
//!     cargo run --release -p realsyn-fuzz -- --target html --seconds 600
//!
//! Exits 1 when an execution panicked (the input is saved under --artifacts); a hang
//! or an allocation past --mem-cap-mb aborts the process with the input in
//! `artifacts/TARGET/current.*`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use realsyn_fuzz::alloc::{CappedAlloc, set_cap};
use realsyn_fuzz::{Limits, fuzz, seeds, targets};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

#[derive(Parser)]
#[command(about = "Mutation fuzzing of realsyn's readers (stable toolchain)")]
struct Args {
    /// A target name, or `all`: html, mmc4, obelics, mediawiki, tar, image,
    /// safetensors, pickle, gguf, recipe.
    #[arg(long, default_value = "all")]
    target: String,
    /// Executions per target.
    #[arg(long, default_value_t = 1_000_000)]
    execs: u64,
    /// Stop a target after this many seconds even if --execs are not done.
    #[arg(long, default_value_t = 3600)]
    seconds: u64,
    /// One execution longer than this is a hang (the process aborts).
    #[arg(long, default_value_t = 20)]
    exec_timeout: u64,
    /// Live allocations past this abort the process (a memory runaway).
    #[arg(long, default_value_t = 4096)]
    mem_cap_mb: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where crashing inputs are kept.
    #[arg(long, default_value = "fuzz-artifacts")]
    artifacts: PathBuf,
    /// Write each input with a new outcome under DIR/TARGET/ (seeds to commit).
    #[arg(long)]
    keep_corpus: Option<PathBuf>,
    /// Run one file through --target once and print its outcome and time (to
    /// reproduce a finding), instead of fuzzing.
    #[arg(long)]
    input: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    set_cap(args.mem_cap_mb << 20);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let limits = Limits {
        execs: args.execs,
        max_time: Duration::from_secs(args.seconds),
        exec_timeout: Duration::from_secs(args.exec_timeout),
        seed: args.seed,
        keep: args.keep_corpus.clone(),
    };
    if let Some(input) = &args.input {
        let t = targets()
            .into_iter()
            .find(|t| t.name == args.target)
            .ok_or_else(|| anyhow::anyhow!("--input needs one --target name"))?;
        let bytes = std::fs::read(input)?;
        let started = std::time::Instant::now();
        let o = (t.run)(input, &bytes);
        println!(
            "{}: {} (refused: {}) in {:.3} s",
            t.name,
            o.signature,
            o.refused,
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let chosen: Vec<_> = targets()
        .into_iter()
        .filter(|t| args.target == "all" || args.target == t.name)
        .collect();
    if chosen.is_empty() {
        anyhow::bail!("--target {}: no such target", args.target);
    }
    println!(
        "| target | reader | executions | s | execs/s | refused | behaviours | edges covered | corpus | slowest ms | peak MB | crashes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    if !realsyn_fuzz::coverage::Coverage::instrumented() {
        eprintln!(
            "realsyn-fuzz: no coverage instrumentation in this build (guided by outcomes only); \
             crates/realsyn-fuzz/fuzz.sh builds the coverage-guided one"
        );
    }
    let mut crashed = false;
    for t in &chosen {
        let r = fuzz(t, seeds(t, &repo)?, &limits, &args.artifacts)?;
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.1} | {:.0} | {} |",
            r.target,
            t.reader,
            r.execs,
            r.seconds,
            r.execs as f64 / r.seconds.max(1e-9),
            r.refused,
            r.behaviours,
            if r.edges == 0 {
                "-".to_string()
            } else {
                format!("{} of {}", r.edges_covered, r.edges)
            },
            r.corpus,
            r.slowest.as_secs_f64() * 1e3,
            r.peak_bytes as f64 / (1 << 20) as f64,
            r.crashes.len()
        );
        for (msg, path) in &r.crashes {
            crashed = true;
            eprintln!("CRASH {}: {msg} ({})", r.target, path.display());
        }
    }
    if crashed {
        std::process::exit(1);
    }
    Ok(())
}
