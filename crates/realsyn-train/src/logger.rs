//! What a run tells the user (rank 0 only, as open_clip's logger): a progress bar,
//! or a line per `log_every` steps when stderr is not a terminal; `metrics.jsonl`
//! (a typed record per step and per zero-shot evaluation); TensorBoard scalars
//! averaged over the steps since the last log.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::metrics::{StepRecord, ZeroShotRecord};
use crate::tensorboard::EventWriter;
use realsyn_data::labelled::metrics::ZeroShotMetrics;

pub(crate) struct Logger {
    /// Rank 0's writers; `None` on the other ranks.
    files: Option<Files>,
    bar: ProgressBar,
    leader: bool,
    /// Since the last log line: seconds, seconds waiting for data, samples.
    window: (f64, f64, u64),
}

struct Files {
    tb: EventWriter,
    metrics: std::fs::File,
}

impl Logger {
    /// A logger for a run writing into `out`, at step `at` of `stop_at`.
    pub fn new(leader: bool, out: &Path, stop_at: u64, at: u64) -> Result<Self> {
        let files = if leader {
            Some(Files {
                tb: EventWriter::create(&out.join("tensorboard"))?,
                metrics: OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(out.join("metrics.jsonl"))
                    .context("opening metrics.jsonl")?,
            })
        } else {
            None
        };
        let bar = if leader {
            progress_bar(stop_at, at)
        } else {
            ProgressBar::hidden()
        };
        Ok(Self {
            files,
            bar,
            leader,
            window: (0.0, 0.0, 0),
        })
    }

    /// A line for the user (above the bar); rank 0 speaks for the job.
    pub fn say(&self, msg: String) {
        if !self.leader {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("{msg}");
        } else {
            self.bar.println(msg);
        }
    }

    /// After each step: its record, the bar, and the window's sums.
    pub fn step(&mut self, rec: &StepRecord, seconds: f64, wait: f64, samples: u64) -> Result<()> {
        self.window.0 += seconds;
        self.window.1 += wait;
        self.window.2 += samples;
        if let Some(f) = &mut self.files {
            writeln!(f.metrics, "{}", serde_json::to_string(rec)?)?;
        }
        self.bar.set_position(rec.step);
        self.bar.set_message(format!(
            "epoch {} loss {:.4} lr {:.2e}",
            rec.epoch, rec.loss, rec.lr
        ));
        Ok(())
    }

    /// Every `log_every` steps: TensorBoard scalars (throughput and data wait over
    /// the window), and a line when there is no bar.
    pub fn log(&mut self, rec: &StepRecord, skipped: u64, stop_at: u64) -> Result<()> {
        let (time, wait, samples) = self.window;
        let s = rec.step;
        if let Some(Files { tb, metrics }) = &mut self.files {
            tb.scalar("train/loss", rec.loss, s)?;
            tb.scalar("train/lr", rec.lr, s)?;
            tb.scalar("train/logit_scale", rec.logit_scale, s)?;
            tb.scalar("train/grad_norm", rec.grad_norm, s)?;
            tb.scalar("train/samples_per_s", samples as f64 / time, s)?;
            tb.scalar("train/data_wait_fraction", wait / time, s)?;
            tb.scalar("train/skipped_samples", skipped as f64, s)?;
            tb.flush()?;
            metrics.flush()?;
        }
        if self.bar.is_hidden() {
            self.say(format!(
                "step {s}/{stop_at} epoch {} loss {:.4} lr {:.3e} scale {:.2} {:.1} samples/s data-wait {:.0}%",
                rec.epoch,
                rec.loss,
                rec.lr,
                rec.logit_scale,
                samples as f64 / time,
                100.0 * wait / time
            ));
        }
        self.window = (0.0, 0.0, 0);
        Ok(())
    }

    /// Before a checkpoint: the records so far are on disk.
    pub fn flush_metrics(&mut self) -> Result<()> {
        if let Some(f) = &mut self.files {
            f.metrics.flush()?;
        }
        Ok(())
    }

    /// Whether this rank writes logs (and so runs the evaluation hooks).
    pub fn writes(&self) -> bool {
        self.files.is_some()
    }

    /// A zero-shot evaluation after `step`.
    pub fn zero_shot(&mut self, step: u64, m: &ZeroShotMetrics) -> Result<()> {
        if let Some(Files { tb, metrics }) = &mut self.files {
            tb.scalar("zeroshot/acc1", m.acc1, step)?;
            tb.scalar("zeroshot/acc5", m.acc5, step)?;
            tb.scalar(
                "zeroshot/mean_per_class_recall",
                m.mean_per_class_recall,
                step,
            )?;
            let rec = ZeroShotRecord { step, zeroshot: m };
            writeln!(metrics, "{}", serde_json::to_string(&rec)?)?;
        }
        self.say(format!(
            "step {step}: zero-shot top-1 {:.2}% top-5 {:.2}% on {} images",
            100.0 * m.acc1,
            100.0 * m.acc5,
            m.n
        ));
        Ok(())
    }

    /// The run's end: the bar cleared, TensorBoard flushed.
    pub fn finish(&mut self) -> Result<()> {
        self.bar.finish_and_clear();
        if let Some(f) = &mut self.files {
            f.tb.flush()?;
        }
        Ok(())
    }
}

fn progress_bar(total: u64, at: u64) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps, ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(at);
    bar
}
