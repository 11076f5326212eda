//! The funnel: for every stage, how many items came in, how many went out, and how
//! many were dropped for each reason (the shape of the paper's Fig. 2). Each shard of
//! each stage writes its own; `merge` adds them up for the whole corpus.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Funnel {
    pub steps: Vec<Step>,
}

/// One filter or dedup step over one kind of item (`documents`, `images`, `sentences`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub unit: String,
    pub input: u64,
    pub output: u64,
    pub dropped: BTreeMap<String, u64>,
    /// Items kept after a repair, by kind (e.g. a page decoded by its declared charset).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repaired: BTreeMap<String, u64>,
}

impl Funnel {
    /// The step `name` over `unit`, created (in order of first use) if new.
    pub fn step(&mut self, name: &str, unit: &str) -> &mut Step {
        if let Some(i) = self
            .steps
            .iter()
            .position(|s| s.name == name && s.unit == unit)
        {
            return &mut self.steps[i];
        }
        self.steps.push(Step {
            name: name.to_string(),
            unit: unit.to_string(),
            ..Step::default()
        });
        self.steps.last_mut().unwrap()
    }

    /// Add another shard's counts (steps matched by name and unit).
    pub fn merge(&mut self, other: &Funnel) {
        for s in &other.steps {
            let mine = self.step(&s.name, &s.unit);
            mine.input += s.input;
            mine.output += s.output;
            for (reason, n) in &s.dropped {
                *mine.dropped.entry(reason.clone()).or_default() += n;
            }
            for (how, n) in &s.repaired {
                *mine.repaired.entry(how.clone()).or_default() += n;
            }
        }
    }

    /// A Markdown table: step, unit, in, out, kept %, drops by reason.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| step | unit | in | out | kept | dropped (reason: count) |\n|---|---|---:|---:|---:|---|\n",
        );
        for s in &self.steps {
            let reasons: Vec<String> = s
                .dropped
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .chain(s.repaired.iter().map(|(r, n)| format!("kept, {r}: {n}")))
                .collect();
            let kept = if s.input > 0 {
                format!("{:.1}%", 100.0 * s.output as f64 / s.input as f64)
            } else {
                "-".into()
            };
            out += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                s.name,
                s.unit,
                s.input,
                s.output,
                kept,
                reasons.join(", ")
            );
        }
        out
    }
}

impl Step {
    pub fn pass(&mut self) {
        self.input += 1;
        self.output += 1;
    }

    /// Count an item kept after a repair (it also passes).
    pub fn repair(&mut self, how: &str) {
        *self.repaired.entry(how.to_string()).or_default() += 1;
    }

    pub fn drop(&mut self, reason: &str) {
        self.input += 1;
        *self.dropped.entry(reason.to_string()).or_default() += 1;
    }

    /// Count one item: kept when `reason` is `None`.
    pub fn record(&mut self, reason: Option<&str>) -> bool {
        match reason {
            None => {
                self.pass();
                true
            }
            Some(r) => {
                self.drop(r);
                false
            }
        }
    }
}
