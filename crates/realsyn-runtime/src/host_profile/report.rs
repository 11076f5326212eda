//! The profile as tables (by thread, by crate or library, by function) and as
//! folded stacks.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use super::{Frame, HostProfile, Stack};

/// Longest function name a table prints (generic impls run to hundreds of chars).
const NAME_WIDTH: usize = 100;

impl HostProfile {
    /// CPU seconds per thread label (with its thread count where several), most
    /// first; `false` marks threads that gave no samples (they block SIGPROF).
    pub fn by_thread(&self) -> Vec<(String, f64, bool)> {
        self.threads
            .iter()
            .filter(|t| t.cpu_s > 0.0 || t.samples > 0)
            .map(|t| {
                let label = if t.threads > 1 {
                    format!("{} ({} threads)", t.label, t.threads)
                } else {
                    t.label.clone()
                };
                (label, t.cpu_s, t.sampled)
            })
            .collect()
    }

    /// Self time (the sampled frame itself) per crate, or per object file for code
    /// that is not Rust (`libcuda.so.1`, `libc.so.6`), most first.
    pub fn self_by_group(&self) -> Vec<(String, f64)> {
        self.sum_by(&self.stacks, |p, frames| {
            frames
                .last()
                .map(|&leaf| p.frames[leaf as usize].group().to_string())
                .into_iter()
                .collect()
        })
    }

    /// Self time per function, most first.
    pub fn self_by_function(&self) -> Vec<(String, f64)> {
        self.sum_by(&self.stacks, |p, frames| {
            frames
                .last()
                .map(|&leaf| p.frames[leaf as usize].function.clone())
                .into_iter()
                .collect()
        })
    }

    /// Inclusive time per function (the samples with it anywhere on the stack,
    /// each sample counted once however often the function recurs), most first.
    pub fn inclusive_by_function(&self) -> Vec<(String, f64)> {
        self.sum_by(&self.stacks, Self::distinct_functions)
    }

    /// The profiled caller's wall time per function, inclusive, most first.
    pub fn caller_wall_by_function(&self) -> Vec<(String, f64)> {
        self.sum_by(&self.caller_wall, Self::distinct_functions)
    }

    /// The profiled caller's wall time by where it was: the innermost frame outside
    /// the thread runtime (std, rayon, crossbeam, libc, ...), so a thread waiting on
    /// a parallel loop is counted under the code that started the loop, with that
    /// frame's caller before it (`op > parallel helper`: the helper alone does not
    /// say which op).
    pub fn caller_wall_by_place(&self) -> Vec<(String, f64)> {
        self.sum_by(&self.caller_wall, |p, frames| {
            let mut own = frames
                .iter()
                .rev()
                .map(|&f| &p.frames[f as usize])
                .filter(|frame| !is_thread_runtime(frame))
                .map(|frame| &frame.function);
            let place = match (own.next(), own.next()) {
                (Some(inner), Some(outer)) => format!("{outer} > {inner}"),
                (Some(inner), None) => inner.clone(),
                // Nothing but the runtime: its innermost frame.
                _ => frames
                    .last()
                    .map(|&f| p.frames[f as usize].function.clone())
                    .unwrap_or_default(),
            };
            vec![place]
        })
    }

    fn distinct_functions(&self, frames: &[u32]) -> Vec<String> {
        let distinct: HashSet<u32> = frames.iter().copied().collect();
        distinct
            .into_iter()
            .map(|f| self.frames[f as usize].function.clone())
            .collect()
    }

    /// Each stack's seconds added to every key `keys` gives it, most first.
    fn sum_by(
        &self,
        stacks: &[Stack],
        keys: impl Fn(&Self, &[u32]) -> Vec<String>,
    ) -> Vec<(String, f64)> {
        let mut rows: HashMap<String, f64> = HashMap::new();
        for s in stacks {
            let seconds = s.seconds;
            for key in keys(self, &s.frames) {
                *rows.entry(key).or_default() += seconds;
            }
        }
        let mut rows: Vec<(String, f64)> = rows.into_iter().collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }

    /// One line per CPU-time stack: `thread;outermost;...;innermost samples`.
    pub fn folded(&self) -> String {
        self.folded_of(&self.stacks)
    }

    /// The profiled caller's wall-clock stacks, folded as [`HostProfile::folded`].
    pub fn wall_folded(&self) -> String {
        self.folded_of(&self.caller_wall)
    }

    fn folded_of(&self, stacks: &[Stack]) -> String {
        let mut out = String::new();
        for s in stacks {
            out.push_str(&s.thread.replace(';', ":"));
            for &f in &s.frames {
                out.push(';');
                // `;` separates frames and the last space the count.
                out.push_str(&self.frames[f as usize].function.replace(';', ":"));
            }
            let _ = writeln!(out, " {}", s.samples);
        }
        out
    }

    /// The report's text: totals, then the four tables with `top` rows each.
    /// Shares are of the process's CPU time.
    pub fn table(&self, top: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Host profile: {:.2} s wall, {:.2} s CPU in the process (getrusage); {} samples \
             ({:.0} per CPU second of the sampled threads; {} asked; {} lost)",
            self.wall_s,
            self.cpu_s,
            self.samples(),
            self.effective_hz(),
            self.hz,
            self.lost,
        );
        let blocked: f64 = self
            .threads
            .iter()
            .filter(|t| t.samples == 0)
            .map(|t| t.cpu_s)
            .sum();
        let seen: f64 = self.threads.iter().map(|t| t.cpu_s).sum();
        let share = |s: f64| 100.0 * s / self.cpu_s.max(1e-9);
        if share(blocked) >= 1.0 {
            let _ = writeln!(
                out,
                "{blocked:.2} s of it ({:.0}%) in threads that block SIGPROF: counted by thread, \
                 not by function",
                share(blocked)
            );
        }
        if share(self.cpu_s - seen) >= 1.0 {
            let _ = writeln!(
                out,
                "{:.2} s of it ({:.0}%) in threads that lived under 10 ms, or before the watcher \
                 first read their clock",
                self.cpu_s - seen,
                share(self.cpu_s - seen)
            );
        }
        let threads: Vec<(String, f64)> = self
            .by_thread()
            .into_iter()
            .map(|(label, s, sampled)| match sampled {
                true => (label, s),
                false => (format!("{label} [no samples: SIGPROF blocked]"), s),
            })
            .collect();
        let tables = [
            ("CPU time by thread", threads),
            ("Self time by crate or library", self.self_by_group()),
            ("Functions by inclusive time", self.inclusive_by_function()),
            ("Functions by self time", self.self_by_function()),
        ];
        for (title, rows) in tables {
            table_rows(&mut out, title, "CPU s", &rows, top, self.cpu_s);
        }
        if !self.caller_wall.is_empty() {
            let _ = writeln!(
                out,
                "\nThe profiled caller's wall time ({:.2} s, {} wall-clock samples), \
                 waiting included; shares of the wall time",
                self.wall_s,
                self.caller_wall.iter().map(|s| s.samples).sum::<u64>()
            );
            let wall = [
                (
                    "Where it was (innermost frame outside std, rayon, crossbeam, libc)",
                    self.caller_wall_by_place(),
                ),
                (
                    "Functions by inclusive wall time",
                    self.caller_wall_by_function(),
                ),
            ];
            for (title, rows) in wall {
                table_rows(&mut out, title, "wall s", &rows, top, self.wall_s);
            }
        }
        out
    }
}

/// One table: a title line, then up to `top` rows of name, seconds and share of
/// `total`.
fn table_rows(
    out: &mut String,
    title: &str,
    unit: &str,
    rows: &[(String, f64)],
    top: usize,
    total: f64,
) {
    let _ = writeln!(
        out,
        "\n{title:<w$} {unit:>9} {:>7}",
        "share",
        w = NAME_WIDTH + 2
    );
    for (name, s) in rows.iter().take(top) {
        let _ = writeln!(
            out,
            "  {:<w$} {s:>9.3} {:>6.1}%",
            shorten(name, NAME_WIDTH),
            100.0 * s / total.max(1e-9),
            w = NAME_WIDTH
        );
    }
}

/// Code a waiting thread sits in whatever it waits for: the standard library,
/// rayon's and crossbeam's scheduling, locks, the C library and the kernel's vDSO
/// (clock reads).
fn is_thread_runtime(frame: &Frame) -> bool {
    match &frame.krate {
        Some(k) => {
            matches!(
                k.as_str(),
                "std" | "core" | "alloc" | "rayon" | "rayon_core"
            ) || k.starts_with("crossbeam")
                || k.starts_with("parking_lot")
        }
        None => [
            "libc.so",
            "libpthread",
            "ld-linux",
            "libgcc_s",
            "linux-vdso",
        ]
        .iter()
        .any(|o| frame.object.starts_with(o)),
    }
}

/// `name` cut to `width` characters with an ellipsis in the middle, which keeps
/// the crate at the front and the method at the end.
pub(super) fn shorten(name: &str, width: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= width {
        return name.to_string();
    }
    let head = (width - 3) / 2;
    let tail = width - 3 - head;
    let mut s: String = chars[..head].iter().collect();
    s.push_str("...");
    s.extend(&chars[chars.len() - tail..]);
    s
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{Frame, Stack, ThreadRow};
    use super::*;

    /// Two threads: `main` (0.45 s on its clock, 45 samples) and two `worker-`
    /// threads (0.2 s, 5 samples: a slower effective rate), and a thread that
    /// blocks SIGPROF (0.3 s, no samples); the process used 1.0 s.
    pub(crate) fn profile() -> HostProfile {
        let frame = |f: &str, o: &str| Frame {
            function: f.into(),
            krate: super::super::rust_crate(f).map(str::to_string),
            object: o.into(),
        };
        // main's samples stand for 0.01 s each, worker-'s for 0.04 s.
        let stack = |t: &str, frames: &[u32], samples: u64| Stack {
            thread: t.into(),
            frames: frames.to_vec(),
            samples,
            seconds: samples as f64 * if t == "main" { 0.01 } else { 0.04 },
        };
        let row = |label: &str, threads, cpu_s, samples| ThreadRow {
            label: label.into(),
            sampled: samples > 0,
            threads,
            cpu_s,
            samples,
        };
        HostProfile {
            wall_s: 1.0,
            cpu_s: 1.0,
            hz: 100.0,
            frames: vec![
                frame("main", "realsyn"),
                frame("burn_autodiff::step", "realsyn"),
                frame("cuLaunchKernel", "libcuda.so.1"),
                frame("[libcuda.so.1]", "libcuda.so.1"),
                frame("std::thread::park", "realsyn"),
                frame("__futex_abstimed_wait_common", "libc.so.6"),
            ],
            stacks: vec![
                // main -> step -> cuLaunchKernel -> (no symbol): 30 samples
                stack("main", &[0, 1, 2, 3], 30),
                // main -> step: 10; recursion main -> step -> step: 5
                stack("main", &[0, 1], 10),
                stack("main", &[0, 1, 1], 5),
                stack("worker-", &[2], 5),
            ],
            // The caller's wall clock, 100 samples of 0.01 s: 60 in the step waiting
            // in std and libc (main -> step -> park -> futex), 40 running the step.
            caller_wall: vec![
                Stack {
                    thread: super::super::WALL_THREAD.into(),
                    frames: vec![0, 1, 4, 5],
                    samples: 60,
                    seconds: 0.6,
                },
                Stack {
                    thread: super::super::WALL_THREAD.into(),
                    frames: vec![0, 1],
                    samples: 40,
                    seconds: 0.4,
                },
            ],
            threads: vec![
                row("main", 1, 0.45, 45),
                row("lp:", 4, 0.3, 0),
                row("worker-", 2, 0.2, 5),
            ],
            lost: 0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn tables_add_up_stack_seconds_and_list_threads_without_samples() {
        let p = profile();
        assert_eq!(p.samples(), 50);
        // main: 0.01 s a sample; worker-: 0.04 s a sample.

        assert!(close(p.sampled_cpu_s(), 0.65));
        let threads = p.by_thread();
        assert_eq!(threads[1], ("lp: (4 threads)".to_string(), 0.3, false));
        assert_eq!(threads[2].0, "worker- (2 threads)");
        let groups = p.self_by_group();
        // libcuda: main's 30 samples (0.30 s) + worker-'s 5 (0.20 s).
        assert_eq!(groups[0].0, "libcuda.so.1");
        assert!(
            close(groups[0].1, 0.50) && close(groups[1].1, 0.15),
            "{groups:?}"
        );
        let inclusive: HashMap<String, f64> = p.inclusive_by_function().into_iter().collect();
        // The recursive stack counts once for burn_autodiff::step.
        assert!(close(inclusive["burn_autodiff::step"], 0.45));
        assert!(close(inclusive["cuLaunchKernel"], 0.50));
        let table = p.table(10);
        assert!(
            table.contains("lp: (4 threads) [no samples: SIGPROF blocked]"),
            "{table}"
        );
        assert!(
            table.contains("0.30 s of it (30%) in threads that block SIGPROF"),
            "{table}"
        );
        assert!(
            table.contains("0.05 s of it (5%) in threads that lived under 10 ms"),
            "{table}"
        );
        assert!(table.contains("50 samples (77 per CPU second"), "{table}");
    }

    #[test]
    fn the_callers_wall_time_is_told_by_where_it_waits() {
        let p = profile();
        // Waiting in std::thread::park and the futex counts under the step, the
        // innermost frame outside the thread runtime.
        let place = p.caller_wall_by_place();
        assert_eq!(place.len(), 1, "{place:?}");
        assert_eq!(place[0].0, "main > burn_autodiff::step");
        assert!(close(place[0].1, 1.0));
        let inclusive: HashMap<String, f64> = p.caller_wall_by_function().into_iter().collect();
        assert!(close(inclusive["std::thread::park"], 0.6));
        assert!(close(inclusive["main"], 1.0));
        let table = p.table(10);
        assert!(
            table.contains("The profiled caller's wall time (1.00 s, 100 wall-clock samples)"),
            "{table}"
        );
        // Wall samples are not CPU time: the CPU tables and folded stacks leave them out.
        assert_eq!(p.samples(), 50);
        assert!(!p.folded().contains("park"));
        assert!(
            p.wall_folded()
                .contains("std::thread::park;__futex_abstimed_wait_common 60")
        );
        assert!(p.wall_flamegraph_svg().contains("width=\"1180.00\""));
    }

    #[test]
    fn folded_lines_carry_thread_frames_and_count() {
        let folded = profile().folded();
        let lines: Vec<&str> = folded.lines().collect();
        assert_eq!(
            lines[0],
            "main;main;burn_autodiff::step;cuLaunchKernel;[libcuda.so.1] 30"
        );
        assert_eq!(lines[3], "worker-;cuLaunchKernel 5");
    }

    #[test]
    fn long_names_keep_both_ends() {
        let s = shorten(&format!("burn_cubecl::{}::launch", "x".repeat(200)), 40);
        assert_eq!(s.chars().count(), 40);
        assert!(
            s.starts_with("burn_cubecl::") && s.ends_with("::launch"),
            "{s}"
        );
    }
}
