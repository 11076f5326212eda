//! Counting what was skipped and why, so a run never dies on one bad sample but
//! still reports every loss at the end; and, with a [`SkipLog`], listing each skipped
//! sample with its reason (img2dataset keeps a status per sample the same way).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Thread-safe `reason -> count`. Clones share the same counts.
#[derive(Debug, Clone, Default)]
pub struct SkipCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// `recording()`: each skip as (reason, what), for a reader that hands skips on
    /// to be counted later, in order (the training loader).
    events: Option<Arc<Mutex<Vec<(String, String)>>>>,
    /// `with_log`: every counted skip is also a line of this log.
    log: Option<Arc<SkipLog>>,
}

/// The first few skips of each reason are printed; later ones are only counted.
const LOG_FIRST: u64 = 5;

impl SkipCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter that also keeps each skip, unprinted, for `take_events`.
    pub fn recording() -> Self {
        Self {
            events: Some(Arc::default()),
            ..Self::default()
        }
    }

    /// This counter, also writing each skip it counts to `log`.
    pub fn with_log(self, log: SkipLog) -> Self {
        Self {
            log: Some(Arc::new(log)),
            ..self
        }
    }

    /// Tag the skips counted from now on with `step` in the log (the training step
    /// whose batch passes them); no-op without a log.
    pub fn log_step(&self, step: u64) {
        if let Some(log) = &self.log {
            log.step.store(step, Ordering::Relaxed);
        }
    }

    /// The skips recorded since the last call, in order (empty unless `recording`).
    pub fn take_events(&self) -> Vec<(String, String)> {
        self.events.as_ref().map_or_else(Vec::new, |e| {
            std::mem::take(&mut *e.lock().expect("skip counter poisoned"))
        })
    }

    /// Count one skip; `what` names the sample or shard for the log line.
    pub fn skip(&self, reason: &str, what: &str) {
        if let Some(events) = &self.events {
            let mut events = events.lock().expect("skip counter poisoned");
            events.push((reason.to_string(), what.to_string()));
        }
        if let Some(log) = &self.log {
            log.write(reason, what);
        }
        let mut counts = self.counts.lock().expect("skip counter poisoned");
        let n = counts.entry(reason.to_string()).or_insert(0);
        *n += 1;
        if self.events.is_some() {
            // Printed by the counter that counts it when it is handed on.
        } else if *n <= LOG_FIRST {
            eprintln!("skipped {what}: {reason}");
        } else if *n == LOG_FIRST + 1 {
            eprintln!("(further '{reason}' skips are counted, not printed)");
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("skip counter poisoned").clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Start from counts saved in a checkpoint.
    pub fn restore(&self, counts: &BTreeMap<String, u64>) {
        *self.counts.lock().expect("skip counter poisoned") = counts.clone();
    }
}

/// One line of a [`SkipLog`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkipLine {
    /// The training step whose batch passed the skip (`SkipCounter::log_step`).
    pub step: u64,
    pub reason: String,
    /// The sample (`shard.tar:key`) or shard.
    pub what: String,
}

/// A JSON-lines file of skipped samples, appended as they are counted (one write per
/// line, so a kill leaves at most one partial last line).
#[derive(Debug)]
pub struct SkipLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    step: AtomicU64,
    failed: std::sync::atomic::AtomicBool,
}

impl SkipLog {
    /// Open `path` for a run resumed after step `through` (0 for a fresh run): lines
    /// of later steps (written ahead of the checkpoint by a killed run, and counted
    /// again when the resumed run passes them) and a partial last line are dropped
    /// first, atomically, so the log always lists what the checkpoint's counts count.
    pub fn open(path: &Path, through: u64) -> Result<Self> {
        keep_through(path, through)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the skip log {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            step: AtomicU64::new(through + 1),
            failed: Default::default(),
        })
    }

    fn write(&self, reason: &str, what: &str) {
        let line = SkipLine {
            step: self.step.load(Ordering::Relaxed),
            reason: reason.to_string(),
            what: what.to_string(),
        };
        let mut bytes = serde_json::to_vec(&line).expect("a skip line serialises");
        bytes.push(b'\n');
        let written = self
            .file
            .lock()
            .expect("skip log poisoned")
            .write_all(&bytes);
        if let Err(e) = written
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            // Counting goes on; only the per-sample list is incomplete.
            eprintln!(
                "warning: cannot write the skip log {}: {e} (skips are still counted)",
                self.path.display()
            );
        }
    }
}

/// Rewrite `path` with its complete lines of steps up to `through`; nothing if absent.
fn keep_through(path: &Path, through: u64) -> Result<()> {
    let Ok(text) = std::fs::read(path) else {
        return Ok(());
    };
    let mut kept = Vec::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        let complete = line.ends_with(b"\n");
        if complete && serde_json::from_slice::<SkipLine>(line).is_ok_and(|l| l.step <= through) {
            kept.extend_from_slice(line);
        }
    }
    if kept.len() != text.len() {
        realsyn_io::fs::write_atomic(path, &kept)?;
    }
    Ok(())
}

/// The lines of a skip log (complete ones).
pub fn read_skip_log(path: &Path) -> Result<Vec<SkipLine>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("{}: {l}", path.display())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_log_keeps_the_checkpointed_steps_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skips.jsonl");
        let counter = SkipCounter::new().with_log(SkipLog::open(&path, 0).unwrap());
        for step in 1..=5 {
            counter.log_step(step);
            counter.skip("corrupt image", &format!("00000.tar:{step:04}"));
        }
        // A kill in the middle of a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"step\":6,\"rea")
            .unwrap();
        drop(counter);
        // Resumed after step 3: steps 4 and 5 will be passed again.
        let resumed = SkipCounter::new().with_log(SkipLog::open(&path, 3).unwrap());
        resumed.skip("no text", "00001.tar:0004");
        let lines = read_skip_log(&path).unwrap();
        let got: Vec<(u64, &str, &str)> = lines
            .iter()
            .map(|l| (l.step, l.reason.as_str(), l.what.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "corrupt image", "00000.tar:0001"),
                (2, "corrupt image", "00000.tar:0002"),
                (3, "corrupt image", "00000.tar:0003"),
                (4, "no text", "00001.tar:0004"),
            ]
        );
        assert_eq!(resumed.total(), 1, "the log does not change the counts");
    }
}
