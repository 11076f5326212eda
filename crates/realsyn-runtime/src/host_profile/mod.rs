//! A sampling profiler of this process's host threads: where the CPU time of a
//! measured region goes, by thread, crate or library, and function, with a flame
//! graph (`realsyn bench train-step ... --profile-host DIR`).
//!
//! Why in-process: the GPU machines this project is measured on have neither `perf`
//! nor Nsight Systems, and what the first GPU numbers left open is where a CUDA
//! training step's host time goes (Burn's autodiff, CubeCL's launches, the CUDA
//! driver: docs/performance.md, "GPU"). On the CPU backend it is the same question
//! for the kernels themselves.
//!
//! Every thread is sampled on its own CPU time (`sampler.rs`: a timer per thread),
//! so a thread asleep in a blocking wait is not sampled, and a driver that spins
//! while it waits is, under the function that waits. The raw stacks are resolved
//! afterwards, each frame with the object it lies in, so frames without a symbol (a
//! stripped `libcuda`) still count against their library. A sample's seconds are
//! its thread's CPU time (read from the thread's clock) shared out over that
//! thread's samples; threads that block the signal are listed with their CPU time
//! and no breakdown.
//!
//! The thread that starts the profiler (the one driving the measured work) is also
//! sampled on the wall clock: where it spends the region's wall time, waiting
//! included. A thread that hands work to a pool or a device and waits gives few CPU
//! samples, and those say nothing of what it waits on; its wall samples do (on the
//! CPU backend: which op's parallel loop; on a GPU: launching or waiting for the
//! device).
//!
//! A release build keeps its symbol table (Cargo strips only debug info), which
//! names every function that was not inlined; a `strip`ped binary shows
//! `[realsyn]` for all of its own code.

mod flamegraph;
mod report;
mod resolve;
mod sampler;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use anyhow::Result;

/// Samples per second of a thread's CPU time asked for. Prime, so the sampling does
/// not lock onto a periodic workload; the kernel checks CPU timers at its tick, so
/// the rate reached is at most the tick's (100-1,000 Hz).
pub const DEFAULT_HZ: i32 = 997;

/// Wall-clock samples per second of the profiled caller. Lower than the CPU rate
/// because each costs the caller ~20 us of CPU in the handler whether it runs or
/// waits (0.4% of its time at this rate); 5 ms apart resolves steps of 0.1 s and up.
pub const WALL_HZ: i32 = 199;

/// The thread label of [`HostProfile::caller_wall`]'s stacks.
pub const WALL_THREAD: &str = "profiled caller (wall clock)";

/// A running profiler; [`HostProfiler::finish`] stops it. One per process at a time
/// (the signal handler is process-wide).
pub struct HostProfiler {
    sampler: sampler::Sampler,
    hz: i32,
    started: Instant,
    cpu_at_start: f64,
    caller: i32,
}

impl HostProfiler {
    /// Start sampling every thread of the process, `hz` times per second of each
    /// thread's CPU time.
    pub fn start(hz: i32) -> Result<Self> {
        // SAFETY: gettid has no preconditions.
        let caller = unsafe { libc::gettid() };
        let sampler = sampler::Sampler::start(hz, Some((caller, WALL_HZ)))?;
        Ok(Self {
            sampler,
            hz,
            started: Instant::now(),
            cpu_at_start: process_cpu_s(),
            caller,
        })
    }

    /// Stop sampling and resolve the stacks.
    pub fn finish(self) -> Result<HostProfile> {
        let wall_s = self.started.elapsed().as_secs_f64();
        let cpu_s = process_cpu_s() - self.cpu_at_start;
        // Stopped before the (slow) symbol resolution.
        let taken = self.sampler.stop();
        let mut raw: HashMap<(i32, Vec<usize>), u64> = HashMap::new();
        let mut wall: HashMap<Vec<usize>, u64> = HashMap::new();
        for sample in taken.samples {
            match sample.wall {
                true => *wall.entry(sample.ips).or_default() += 1,
                false => *raw.entry((sample.tid, sample.ips)).or_default() += 1,
            }
        }
        let label = |tid: i32| {
            let name = taken.threads.get(&tid).map_or("", |t| t.name.as_str());
            thread_label(name, tid == self.caller)
        };
        // Per thread: its samples, and the CPU seconds each of them stands for.
        let mut per_thread: HashMap<i32, u64> = HashMap::new();
        for ((tid, _), count) in &raw {
            *per_thread.entry(*tid).or_default() += count;
        }
        let cpu_of = |tid: i32| taken.threads.get(&tid).map_or(0.0, |t| t.cpu_s);
        let mut rows: BTreeMap<(String, bool), ThreadRow> = BTreeMap::new();
        for (&tid, thread) in &taken.threads {
            let sampled = per_thread.contains_key(&tid);
            let r = rows
                .entry((label(tid), sampled))
                .or_insert_with(|| ThreadRow {
                    label: label(tid),
                    sampled,
                    threads: 0,
                    cpu_s: 0.0,
                    samples: 0,
                });
            r.threads += 1;
            r.cpu_s += thread.cpu_s;
            r.samples += per_thread.get(&tid).copied().unwrap_or(0);
        }
        let mut resolver = resolve::Resolver::default();
        let mut merged = Merged::new();
        for ((tid, ips), count) in raw {
            let seconds = count as f64 * cpu_of(tid) / per_thread[&tid] as f64;
            merge(&mut merged, &mut resolver, label(tid), &ips, count, seconds);
        }
        // The caller's wall-clock samples: each the region's wall time shared out
        // over them (the timer keeps the rate asked, so this is ~1 / WALL_HZ each).
        let wall_samples: u64 = wall.values().sum();
        let mut merged_wall = Merged::new();
        for (ips, count) in wall {
            let seconds = count as f64 * wall_s / wall_samples as f64;
            let thread = WALL_THREAD.to_string();
            merge(
                &mut merged_wall,
                &mut resolver,
                thread,
                &ips,
                count,
                seconds,
            );
        }
        let mut threads: Vec<ThreadRow> = rows.into_values().collect();
        threads.sort_by(|a, b| {
            b.cpu_s
                .total_cmp(&a.cpu_s)
                .then_with(|| a.label.cmp(&b.label))
        });
        Ok(HostProfile {
            wall_s,
            cpu_s,
            hz: self.hz as f64,
            frames: resolver.into_frames(),
            stacks: into_stacks(merged),
            caller_wall: into_stacks(merged_wall),
            threads,
            lost: taken.lost as u64,
        })
    }
}

/// Samples by (thread label, resolved stack): how many, and the seconds they stand for.
type Merged = HashMap<(String, Vec<u32>), (u64, f64)>;

/// `count` samples of stack `ips` on `thread`, standing for `seconds`, added in.
fn merge(
    merged: &mut Merged,
    resolver: &mut resolve::Resolver,
    thread: String,
    ips: &[usize],
    count: u64,
    seconds: f64,
) {
    let m = merged.entry((thread, resolver.stack(ips))).or_default();
    m.0 += count;
    m.1 += seconds;
}

/// The merged samples as stacks, by thread and then call path.
fn into_stacks(merged: Merged) -> Vec<Stack> {
    let mut stacks: Vec<Stack> = merged
        .into_iter()
        .map(|((thread, frames), (samples, seconds))| Stack {
            thread,
            frames,
            samples,
            seconds,
        })
        .collect();
    stacks.sort_by(|a, b| (&a.thread, &a.frames).cmp(&(&b.thread, &b.frames)));
    stacks
}

/// One resolved frame: a function (or `[object]` where the object has no symbol
/// for it), the Rust crate it belongs to where that can be told, and the file it
/// lies in (`realsyn`, `libcuda.so.1`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    pub function: String,
    pub krate: Option<String>,
    pub object: String,
}

impl Frame {
    /// The crate, else the object file.
    pub fn group(&self) -> &str {
        self.krate.as_deref().unwrap_or(&self.object)
    }
}

/// One distinct call stack of one thread (label), how often it was sampled, and
/// the CPU seconds those samples stand for: each sample its thread's CPU time (the
/// thread's clock) shared out over that thread's samples. Not samples / `hz`: CPU
/// timers are checked at the kernel's tick, so a thread is sampled at most once per
/// tick (100-1,000 Hz, by kernel), whatever rate was asked for.
#[derive(Clone, Debug)]
pub struct Stack {
    pub thread: String,
    /// Indices into [`HostProfile::frames`], outermost first.
    pub frames: Vec<u32>,
    pub samples: u64,
    pub seconds: f64,
}

/// The threads under one label (a pool's threads share one: `rayon-`; a thread
/// inherits its creator's name until it names itself) that gave samples, or that
/// gave none, over the profiled region: their CPU time from their own clocks.
#[derive(Clone, Debug)]
pub struct ThreadRow {
    pub label: String,
    /// False for threads that gave no samples: they block SIGPROF (Mesa's workers,
    /// some drivers'), so their CPU time is known and where it goes is not.
    pub sampled: bool,
    pub threads: usize,
    pub cpu_s: f64,
    pub samples: u64,
}

/// The samples of one profiled region, resolved.
#[derive(Clone, Debug)]
pub struct HostProfile {
    pub wall_s: f64,
    /// The process's user + system CPU time over the region (getrusage).
    pub cpu_s: f64,
    /// The sampling rate asked for (see [`HostProfile::effective_hz`]).
    pub hz: f64,
    pub frames: Vec<Frame>,
    /// The CPU-time samples of every thread.
    pub stacks: Vec<Stack>,
    /// The profiled caller's wall-clock samples (thread [`WALL_THREAD`]): where
    /// that thread was over the region, waiting included; their seconds add up to
    /// the region's wall time.
    pub caller_wall: Vec<Stack>,
    /// Every thread seen, by label, most CPU time first.
    pub threads: Vec<ThreadRow>,
    /// Samples not taken (the buffer full, or the thread inside the unwinder).
    pub lost: u64,
}

impl HostProfile {
    pub fn samples(&self) -> u64 {
        self.stacks.iter().map(|s| s.samples).sum()
    }

    /// CPU seconds of the threads that gave samples.
    pub fn sampled_cpu_s(&self) -> f64 {
        self.threads
            .iter()
            .filter(|t| t.sampled)
            .map(|t| t.cpu_s)
            .sum()
    }

    /// Samples per CPU second of the sampled threads.
    pub fn effective_hz(&self) -> f64 {
        self.samples() as f64 / self.sampled_cpu_s().max(1e-9)
    }

    /// Write `DIR/host-profile.txt` (the tables), `.folded` (one line per stack, as
    /// Brendan Gregg's flamegraph.pl, inferno and speedscope read) and `.svg` (the
    /// flame graph), and the profiled caller's wall-clock stacks as
    /// `host-profile-wall.{folded,svg}`; each file atomically.
    pub fn write(&self, dir: &Path, top: usize) -> Result<()> {
        let put = |name: &str, text: String| {
            realsyn_io::fs::write_atomic(&dir.join(name), text.as_bytes())
        };
        put("host-profile.txt", self.table(top))?;
        put("host-profile.folded", self.folded())?;
        put("host-profile.svg", self.flamegraph_svg())?;
        put("host-profile-wall.folded", self.wall_folded())?;
        put("host-profile-wall.svg", self.wall_flamegraph_svg())
    }
}

/// A thread's label in the tables: its name without a trailing worker number, so a
/// pool's threads add up to one row (`rayon-3` -> `rayon-`); the thread that
/// started the profiler is marked.
fn thread_label(name: &str, caller: bool) -> String {
    let name = if name.is_empty() { "unnamed" } else { name };
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let base = if base.is_empty() { name } else { base };
    if caller {
        format!("{name} (profiled caller)")
    } else {
        base.to_string()
    }
}

/// The leading path segment of a demangled Rust name, if it is one (a symbol
/// table's names are full paths).
fn rust_crate(function: &str) -> Option<&str> {
    let s = function.trim_start_matches(['<', '&', '*', '(']);
    let s = ["mut ", "dyn ", "const "]
        .iter()
        .fold(s, |s, p| s.strip_prefix(p).unwrap_or(s));
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0 && s[end..].starts_with("::")).then(|| &s[..end])
}

/// The crate a source file belongs to: the folder above its `src` (or `tests`,
/// `benches`, `examples`) without a version, `-` as `_` (`.../burn-flex-0.21.0/src/
/// ops/mod.rs` -> `burn_flex`, `/rustc/<hash>/library/core/src/...` -> `core`). Debug
/// info names functions without their path, so the file tells the crate.
fn crate_of_file(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    let at = parts
        .iter()
        .rposition(|p| matches!(*p, "src" | "tests" | "benches" | "examples"))?;
    let dir = *parts.get(at.checked_sub(1)?)?;
    // A registry folder ends in -MAJOR.MINOR.PATCH.
    let name = match dir.rsplit_once('-') {
        Some((n, v)) if v.starts_with(|c: char| c.is_ascii_digit()) && v.contains('.') => n,
        _ => dir,
    };
    (!name.is_empty()).then(|| name.replace('-', "_"))
}

/// The process's user + system CPU seconds so far.
fn process_cpu_s() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    s(usage.ru_utime) + s(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_are_read_from_demangled_names() {
        assert_eq!(
            rust_crate("burn_flex::ops::matmul::gemm"),
            Some("burn_flex")
        );
        assert_eq!(
            rust_crate("<burn_autodiff::backend::Autodiff<B> as burn_backend::X>::float_add"),
            Some("burn_autodiff")
        );
        assert_eq!(
            rust_crate("<&mut core::fmt::Formatter as W>::w"),
            Some("core")
        );
        assert_eq!(rust_crate("cuLaunchKernel"), None);
        assert_eq!(rust_crate("[libcuda.so.1]"), None);
        let f = Frame {
            function: "memcpy".into(),
            krate: None,
            object: "libc.so.6".into(),
        };
        assert_eq!(f.group(), "libc.so.6");
    }

    #[test]
    fn crates_are_read_from_source_paths() {
        let krate = |p: &str| crate_of_file(p);
        assert_eq!(
            krate("/root/.cargo/registry/src/index.crates.io-1/burn-flex-0.21.0/src/ops/mod.rs"),
            Some("burn_flex".into())
        );
        assert_eq!(
            krate("/rustc/5980761/library/core/src/num/mod.rs"),
            Some("core".into())
        );
        assert_eq!(
            krate("third_party/burn-cubecl/src/kernel/place.rs"),
            Some("burn_cubecl".into())
        );
        assert_eq!(
            krate("crates/realsyn-runtime/tests/host_profile.rs"),
            Some("realsyn_runtime".into())
        );
        assert_eq!(krate("/build/glibc/string/memcpy.S"), None);
    }

    #[test]
    fn pool_threads_share_a_label() {
        assert_eq!(thread_label("rayon-3", false), "rayon-");
        assert_eq!(thread_label("rayon-12", false), "rayon-");
        assert_eq!(thread_label("2", false), "2");
        assert_eq!(thread_label("", false), "unnamed");
        assert_eq!(thread_label("main", true), "main (profiled caller)");
    }
}
