//! The profile as tables (by thread, by crate or library, by function) and as
//! folded stacks.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use super::HostProfile;

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
        self.sum_by(|p, frames| {
            frames
                .last()
                .map(|&leaf| p.frames[leaf as usize].group().to_string())
                .into_iter()
                .collect()
        })
    }

    /// Self time per function, most first.
    pub fn self_by_function(&self) -> Vec<(String, f64)> {
        self.sum_by(|p, frames| {
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
        self.sum_by(|p, frames| {
            let distinct: HashSet<u32> = frames.iter().copied().collect();
            distinct
                .into_iter()
                .map(|f| p.frames[f as usize].function.clone())
                .collect()
        })
    }

    /// Each stack's seconds added to every key `keys` gives it, most first.
    fn sum_by(&self, keys: impl Fn(&Self, &[u32]) -> Vec<String>) -> Vec<(String, f64)> {
        let mut rows: HashMap<String, f64> = HashMap::new();
        for s in &self.stacks {
            let seconds = s.seconds;
            for key in keys(self, &s.frames) {
                *rows.entry(key).or_default() += seconds;
            }
        }
        let mut rows: Vec<(String, f64)> = rows.into_iter().collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }

    /// One line per stack: `thread;outermost;...;innermost samples`.
    pub fn folded(&self) -> String {
        let mut out = String::new();
        for s in &self.stacks {
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
            let _ = writeln!(out, "\n{title:<60} {:>9} {:>7}", "CPU s", "share");
            for (name, s) in rows.into_iter().take(top) {
                let _ = writeln!(
                    out,
                    "  {:<100} {s:>9.3} {:>6.1}%",
                    shorten(&name, NAME_WIDTH),
                    100.0 * s / self.cpu_s.max(1e-9)
                );
            }
        }
        out
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
            ],
            stacks: vec![
                // main -> step -> cuLaunchKernel -> (no symbol): 30 samples
                stack("main", &[0, 1, 2, 3], 30),
                // main -> step: 10; recursion main -> step -> step: 5
                stack("main", &[0, 1], 10),
                stack("main", &[0, 1, 1], 5),
                stack("worker-", &[2], 5),
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
