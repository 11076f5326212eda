//! # realsyn-fuzz
//!
//! A mutation fuzzer for every reader that meets hostile input, on the stable
//! toolchain (cargo-fuzz needs nightly): each target feeds bytes to the reader the
//! builder or trainer really calls, through its public entry point (a document file
//! through `ingest::Input`, a tar through `wds::read_shard`, image bytes through
//! `decode_checked`, weights through the model library's readers, a GGUF through
//! the embedded LLM's loader, a recipe through `Recipe::load`). An execution fails when the reader panics, runs past a time cap
//! (a watchdog aborts the process), or makes the process allocate past a cap (a
//! counting global allocator aborts it); the input is kept under `artifacts/`.
//!
//! Guidance: an input joins the working corpus when it reaches new edge coverage
//! (LLVM SanitizerCoverage counters, in a binary built by `fuzz.sh`; see `coverage`)
//! or a new outcome (a new error reason, a new count of documents or samples), so
//! mutations build on inputs that reach new code and new behaviour.
//!
//! Owns the harness and the seed corpora (`corpus/TARGET/`); depends on the readers'
//! crates and on nothing that depends on it.

pub mod alloc;
pub mod coverage;
pub mod mutate;
pub mod targets;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use realsyn_io::hash::fnv1a;

pub use targets::{Target, targets};

/// Most inputs kept in a target's working corpus; past it a new input replaces a
/// random one that is not a seed.
const MAX_CORPUS: usize = 4096;

/// How often a campaign prints a status line (stderr), as AFL's screen would.
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// Nanoseconds since `EPOCH` when the running execution started; 0 when idle.
static EXEC_STARTED: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static E: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// A campaign's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub execs: u64,
    /// Stop earlier after this long.
    pub max_time: Duration,
    /// One execution longer than this is a hang.
    pub exec_timeout: Duration,
    pub seed: u64,
    /// Write every input with a new outcome to `DIR/NAME/` (a grown corpus to commit
    /// as seeds), with its outcome in `DIR/NAME/outcomes.tsv`.
    pub keep: Option<PathBuf>,
}

/// What one campaign found.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub target: String,
    pub execs: u64,
    pub seconds: f64,
    /// Executions the reader refused with an error or a counted skip (fine).
    pub refused: u64,
    /// Distinct outcomes seen (the behavioural guidance signal).
    pub behaviours: usize,
    /// Edges reached and edges instrumented (both 0 in a build without coverage).
    pub edges_covered: usize,
    pub edges: usize,
    pub corpus: usize,
    /// Panics: (message, saved input).
    pub crashes: Vec<(String, PathBuf)>,
    pub slowest: Duration,
    /// Highest bytes allocated and live at once during the campaign.
    pub peak_bytes: usize,
}

/// The seeds of a target: its `corpus/NAME/` files and the repository fixtures it lists.
pub fn seeds(t: &Target, repo: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(t.name);
    if dir.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            out.push(std::fs::read(&f).with_context(|| f.display().to_string())?);
        }
    }
    out.extend((t.made_seeds)());
    for f in t.fixtures {
        let p = repo.join(f);
        out.push(std::fs::read(&p).with_context(|| p.display().to_string())?);
    }
    if out.is_empty() {
        anyhow::bail!(
            "{}: no seeds (commit some under corpus/{}/)",
            t.name,
            t.name
        );
    }
    Ok(out)
}

/// A watchdog that aborts the process when one execution runs past `timeout` (its
/// input is the `current` file of the campaign). Started once per process.
pub fn start_watchdog(timeout: Duration) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let started = EXEC_STARTED.load(Ordering::Relaxed);
                if started == 0 {
                    continue;
                }
                let now = epoch().elapsed().as_nanos() as u64;
                if now.saturating_sub(started) > timeout.as_nanos() as u64 {
                    let _ = std::io::stderr().write_all(
                        b"realsyn-fuzz: HANG: one execution ran past --exec-timeout; its input is artifacts/TARGET/current.*\n",
                    );
                    std::process::abort();
                }
            }
        });
    });
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Run `t` on mutations of its seeds within `limits`; crashing inputs are saved under
/// `artifacts/NAME/`.
pub fn fuzz(t: &Target, seeds: Vec<Vec<u8>>, limits: &Limits, artifacts: &Path) -> Result<Report> {
    let dir = artifacts.join(t.name);
    std::fs::create_dir_all(&dir)?;
    let current = dir.join(format!("current.{}", t.ext));
    start_watchdog(limits.exec_timeout);
    let mut rng = StdRng::seed_from_u64(limits.seed ^ fnv1a(t.name.as_bytes()));
    let n_seeds = seeds.len();
    let mut corpus = seeds;
    let mut coverage = coverage::Coverage::new();
    let mut seen = std::collections::HashSet::new();
    let mut report = Report {
        target: t.name.into(),
        ..Default::default()
    };
    // Quiet panics: they are counted and saved, not printed per execution.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let keep = match &limits.keep {
        Some(k) => {
            std::fs::create_dir_all(k.join(t.name))?;
            Some(k.join(t.name))
        }
        None => None,
    };
    let mut outcomes = String::new();
    let started = Instant::now();
    alloc::reset_peak();
    let mut exec = 0u64;
    let mut last_status = Instant::now();
    while exec < limits.execs && started.elapsed() < limits.max_time {
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            let s = started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {exec} executions in {s:.0} s ({:.0}/s), {} edges, corpus {}, {} crashes",
                t.name,
                exec as f64 / s,
                coverage.covered(),
                corpus.len(),
                report.crashes.len()
            );
        }
        // The seeds themselves first, then mutations.
        let input = if (exec as usize) < corpus.len() {
            corpus[exec as usize].clone()
        } else {
            // The shorter of two picks: small inputs run fast and mutate to the point
            // (AFL favours them for the same reason).
            let (a, b) = (
                rng.random_range(0..corpus.len()),
                rng.random_range(0..corpus.len()),
            );
            let pick = if corpus[a].len() <= corpus[b].len() {
                a
            } else {
                b
            };
            let base = corpus[pick].clone();
            let other = &corpus[rng.random_range(0..corpus.len())];
            mutate::mutate(base, other, t.dictionary, &mut rng)
        };
        exec += 1;
        std::fs::write(&current, &input)?;
        coverage.reset();
        let t0 = Instant::now();
        EXEC_STARTED.store(
            epoch().elapsed().as_nanos().max(1) as u64,
            Ordering::Relaxed,
        );
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(&current, &input)));
        EXEC_STARTED.store(0, Ordering::Relaxed);
        report.slowest = report.slowest.max(t0.elapsed());
        let new_edges = coverage.fold();
        match outcome {
            Ok(o) => {
                if o.refused {
                    report.refused += 1;
                }
                let new_outcome = seen.insert(o.signature.clone());
                if new_outcome {
                    if let Some(k) = &keep {
                        let name = format!("{:016x}.{}", fnv1a(&input), t.ext);
                        std::fs::write(k.join(&name), &input)?;
                        outcomes.push_str(&format!("{name}\t{}\n", o.signature));
                    }
                }
                if new_outcome || new_edges {
                    if corpus.len() < MAX_CORPUS {
                        corpus.push(input);
                    } else if corpus.len() > n_seeds {
                        let at = rng.random_range(n_seeds..corpus.len());
                        corpus[at] = input;
                    }
                }
            }
            Err(p) => {
                let msg = panic_message(p.as_ref());
                let saved = dir.join(format!("crash-{:016x}.{}", fnv1a(&input), t.ext));
                std::fs::write(&saved, &input)?;
                report.crashes.push((msg, saved));
            }
        }
    }
    std::panic::set_hook(hook);
    if let Some(k) = &keep {
        std::fs::write(k.join("outcomes.tsv"), outcomes)?;
    }
    let _ = std::fs::remove_file(&current);
    report.execs = exec;
    report.seconds = started.elapsed().as_secs_f64();
    report.behaviours = seen.len();
    report.corpus = corpus.len();
    report.edges = coverage::edges();
    report.edges_covered = coverage.covered();
    report.peak_bytes = alloc::peak();
    Ok(report)
}
