//! The profile as tables (by thread, by crate or library, by function) and as
//! folded stacks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use super::HostProfile;

/// Longest function name a table prints (generic impls run to hundreds of chars).
const NAME_WIDTH: usize = 100;

impl HostProfile {
    /// CPU seconds per thread label, largest first.
    pub fn by_thread(&self) -> Vec<(String, f64)> {
        let mut rows: BTreeMap<&str, u64> = BTreeMap::new();
        for s in &self.stacks {
            *rows.entry(&s.thread).or_default() += s.samples;
        }
        self.seconds_sorted(rows.into_iter().map(|(k, v)| (k.to_string(), v)))
    }

    /// Self time (the sampled frame itself) per crate, or per object file for code
    /// that is not Rust (`libcuda.so.1`, `libc.so.6`), largest first.
    pub fn self_by_group(&self) -> Vec<(String, f64)> {
        let mut rows: HashMap<&str, u64> = HashMap::new();
        for s in &self.stacks {
            if let Some(&leaf) = s.frames.last() {
                *rows.entry(self.frames[leaf as usize].group()).or_default() += s.samples;
            }
        }
        self.seconds_sorted(rows.into_iter().map(|(k, v)| (k.to_string(), v)))
    }

    /// Self time per function, largest first.
    pub fn self_by_function(&self) -> Vec<(String, f64)> {
        let mut rows: HashMap<u32, u64> = HashMap::new();
        for s in &self.stacks {
            if let Some(&leaf) = s.frames.last() {
                *rows.entry(leaf).or_default() += s.samples;
            }
        }
        self.by_frame(rows)
    }

    /// Inclusive time per function (the samples with it anywhere on the stack,
    /// each sample counted once however often the function recurs), largest first.
    pub fn inclusive_by_function(&self) -> Vec<(String, f64)> {
        let mut rows: HashMap<u32, u64> = HashMap::new();
        for s in &self.stacks {
            let distinct: HashSet<u32> = s.frames.iter().copied().collect();
            for f in distinct {
                *rows.entry(f).or_default() += s.samples;
            }
        }
        self.by_frame(rows)
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
    pub fn table(&self, top: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Host profile: {:.2} s wall, {:.2} s CPU in the process (getrusage), shared out \
             over {} samples ({:.0} per CPU second; {} asked; {} lost)",
            self.wall_s,
            self.cpu_s,
            self.samples(),
            self.effective_hz(),
            self.hz,
            self.lost,
        );
        let threads: Vec<(String, f64)> = self
            .by_thread()
            .into_iter()
            .map(|(label, s)| match self.threads.get(&label) {
                Some(&n) if n > 1 => (format!("{label} ({n} threads)"), s),
                _ => (label, s),
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

    fn by_frame(&self, rows: HashMap<u32, u64>) -> Vec<(String, f64)> {
        self.seconds_sorted(
            rows.into_iter()
                .map(|(f, n)| (self.frames[f as usize].function.clone(), n)),
        )
    }

    fn seconds_sorted(&self, rows: impl Iterator<Item = (String, u64)>) -> Vec<(String, f64)> {
        let mut rows: Vec<(String, u64)> = rows.collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.into_iter()
            .map(|(k, n)| (k, self.seconds(n)))
            .collect()
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
mod tests {
    use super::super::{Frame, Stack};
    use super::*;

    fn profile() -> HostProfile {
        let frame = |f: &str, o: &str| Frame {
            function: f.into(),
            krate: super::super::rust_crate(f).map(str::to_string),
            object: o.into(),
        };
        let stack = |t: &str, frames: &[u32], samples| Stack {
            thread: t.into(),
            frames: frames.to_vec(),
            samples,
        };
        HostProfile {
            wall_s: 1.0,
            cpu_s: 0.5,
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
            threads: [("main".to_string(), 1), ("worker-".to_string(), 2)].into(),
            lost: 0,
        }
    }

    #[test]
    fn tables_add_samples_up_by_thread_group_and_function() {
        let p = profile();
        assert_eq!(p.samples(), 50);
        assert!((p.seconds_per_sample() - 0.01).abs() < 1e-12);
        assert!((p.effective_hz() - 100.0).abs() < 1e-9);
        assert_eq!(
            p.by_thread(),
            vec![("main".to_string(), 0.45), ("worker-".to_string(), 0.05)]
        );
        assert_eq!(
            p.self_by_group(),
            vec![
                ("libcuda.so.1".to_string(), 0.35),
                ("burn_autodiff".to_string(), 0.15)
            ]
        );
        let inclusive: HashMap<String, f64> = p.inclusive_by_function().into_iter().collect();
        // The recursive stack counts once for burn_autodiff::step.
        assert!((inclusive["burn_autodiff::step"] - 0.45).abs() < 1e-12);
        assert!((inclusive["main"] - 0.45).abs() < 1e-12);
        assert!((inclusive["cuLaunchKernel"] - 0.35).abs() < 1e-12);
        let table = p.table(10);
        assert!(table.contains("worker- (2 threads)"), "{table}");
        assert!(
            table.contains("over 50 samples (100 per CPU second; 100 asked; 0 lost)"),
            "{table}"
        );
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
