//! Learning-rate schedules, evaluated per optimiser step (0-based: the k-th update
//! uses `lr(k)`, as PyTorch does after `scheduler.step()` follows each update).

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// torch.optim.lr_scheduler.OneCycleLR (cos anneal, two phases): the paper's.
    Onecycle,
    /// open_clip's `cosine_lr`: linear warmup then cosine to 0.
    Cosine,
    /// open_clip's `const_lr`: linear warmup then constant.
    Constant,
}

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub max_lr: f64,
    pub total_steps: u64,
    pub pct_start: f64,
    pub div_factor: f64,
    pub final_div_factor: f64,
    pub warmup_steps: u64,
    /// OneCycle's momentum cycling of Adam's beta1 (PyTorch default on; the paper's
    /// Table 7 states beta1 = 0.9, so recipes turn it off).
    pub cycle_momentum: bool,
    pub base_momentum: f64,
    pub max_momentum: f64,
}

impl Schedule {
    /// Reject settings PyTorch fails on: OneCycleLR divides by the warmup phase's
    /// length `pct_start * total - 1`, a ZeroDivisionError in Python when it is 0
    /// (a NaN learning rate here). A negative length is allowed, as in PyTorch.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.kind == ScheduleKind::Onecycle
            && self.pct_start * self.total_steps as f64 - 1.0 == 0.0
        {
            anyhow::bail!(
                "OneCycle's warmup phase has zero length (pct_start x total steps = {} x {} = 1): change train.pct_start",
                self.pct_start,
                self.total_steps
            );
        }
        if self.total_steps == 0 {
            anyhow::bail!("the schedule has no steps");
        }
        Ok(())
    }

    pub fn lr(&self, step: u64) -> f64 {
        match self.kind {
            ScheduleKind::Onecycle => {
                let initial = self.max_lr / self.div_factor;
                let min = initial / self.final_div_factor;
                self.one_cycle(step, [initial, self.max_lr, min])
            }
            ScheduleKind::Cosine => {
                if step < self.warmup_steps {
                    self.max_lr * (step + 1) as f64 / self.warmup_steps as f64
                } else {
                    let e = (step - self.warmup_steps) as f64;
                    let es = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                    0.5 * (1.0 + (PI * e / es).cos()) * self.max_lr
                }
            }
            ScheduleKind::Constant => {
                if step < self.warmup_steps {
                    self.max_lr * (step + 1) as f64 / self.warmup_steps as f64
                } else {
                    self.max_lr
                }
            }
        }
    }

    /// Adam's beta1 at `step`, when OneCycle cycles momentum.
    pub fn beta1(&self, step: u64, default: f64) -> f64 {
        if self.kind == ScheduleKind::Onecycle && self.cycle_momentum {
            self.one_cycle(
                step,
                [self.max_momentum, self.base_momentum, self.max_momentum],
            )
        } else {
            default
        }
    }

    /// OneCycleLR's `get_lr` for values `[start, peak, end]`, in f64 like Python.
    fn one_cycle(&self, step: u64, [start, peak, end]: [f64; 3]) -> f64 {
        let total = self.total_steps as f64;
        let phases = [
            (self.pct_start * total - 1.0, start, peak),
            (total - 1.0, peak, end),
        ];
        let step = step as f64;
        let mut start_step = 0.0;
        for (i, (end_step, from, to)) in phases.iter().enumerate() {
            if step <= *end_step || i == phases.len() - 1 {
                let pct = (step - start_step) / (end_step - start_step);
                return to + (from - to) / 2.0 * ((PI * pct).cos() + 1.0);
            }
            start_step = *end_step;
        }
        unreachable!("the last phase always matches")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind) -> Schedule {
        Schedule {
            kind,
            max_lr: 1e-3,
            total_steps: 100,
            pct_start: 0.1,
            div_factor: 25.0,
            final_div_factor: 1e4,
            warmup_steps: 10,
            cycle_momentum: false,
            base_momentum: 0.85,
            max_momentum: 0.95,
        }
    }

    #[test]
    fn one_cycle_starts_low_peaks_at_pct_start_and_ends_at_min() {
        let s = sched(ScheduleKind::Onecycle);
        assert!((s.lr(0) - 4e-5).abs() < 1e-15);
        assert!((s.lr(9) - 1e-3).abs() < 1e-15);
        assert!((s.lr(99) - 4e-9).abs() < 1e-15);
        assert!(s.lr(50) < s.lr(20));
    }

    #[test]
    fn one_cycle_too_short_to_warm_up_is_rejected_not_nan() {
        let mut s = sched(ScheduleKind::Onecycle);
        s.total_steps = 10;
        assert!(
            s.validate().is_err(),
            "0.1 x 10 steps: a zero-length warmup phase"
        );
        assert!(
            s.lr(0).is_nan(),
            "which PyTorch rejects and would be NaN here"
        );
        s.pct_start = 0.3;
        assert!(s.validate().is_ok());
        assert!((0..10).all(|k| s.lr(k).is_finite()));
    }

    #[test]
    fn cosine_and_constant_warm_up_linearly() {
        let c = sched(ScheduleKind::Cosine);
        assert!((c.lr(0) - 1e-4).abs() < 1e-15);
        assert!((c.lr(10) - 1e-3).abs() < 1e-15);
        assert!((c.lr(55) - 5e-4).abs() < 1e-12);
        let k = sched(ScheduleKind::Constant);
        assert_eq!(k.lr(70), 1e-3);
    }
}
