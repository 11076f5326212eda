//! Counting what was skipped and why, so a run never dies on one bad sample but
//! still reports every loss at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Thread-safe `reason -> count`. Clones share the same counts.
#[derive(Debug, Clone, Default)]
pub struct SkipCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// `recording()`: each skip as (reason, what), for a reader that hands skips on
    /// to be counted later, in order (the training loader).
    events: Option<Arc<Mutex<Vec<(String, String)>>>>,
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
