//! The training loop (open_clip's `train_one_epoch` and the loop around it):
//! `setup` makes the [`Run`], each epoch streams batches through one optimisation
//! step each, the `logger` reports, checkpoints are written every
//! `checkpoint_every` steps and at the end, and the zero-shot hook evaluates every
//! `zeroshot.every` steps. Resumable from any checkpoint.
//!
//! In a job of several processes (`distributed`) every rank runs this loop on its
//! own data streams and replica; the step's collectives keep the replicas equal,
//! and rank 0 alone writes logs, checkpoints and evaluations.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use realsyn_data::labelled::LabelledDataset;
use realsyn_data::loader::DataPosition;
use realsyn_data::wds::SkipCounter;
use realsyn_io::fs::write_atomic;
use realsyn_model::common::batch::to_scalar;
use realsyn_model::{Clip, ClipTokenizer};
use serde::Serialize;

use crate::checkpoint::{self, TrainState};
use crate::distributed::{LaunchEnv, ProcessGroup};
use crate::logger::Logger;
use crate::metrics::StepRecord;
use crate::optim::clamp_logit_scale;
use crate::recipe::Recipe;
use crate::setup::{Run, setup};
use crate::step::{DeviceSlice, StepPlan, distributed_step, replicate};
use crate::streams::{RankBatch, RankLoader};
use crate::zero_shot::zero_shot_accuracy;
use realsyn_data::labelled::metrics::ZeroShotMetrics;

#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub last_loss: f64,
    pub samples_per_s: f64,
    pub skips: BTreeMap<String, u64>,
    pub checkpoint: PathBuf,
    pub zeroshot: Option<ZeroShotMetrics>,
}

/// Train as `recipe` says on `devices` (data parallel when several; the first holds
/// the master weights and the optimiser). `resume` is `latest` or a checkpoint dir.
/// Started by torchrun or Slurm, the process joins its job as the rank they say.
pub fn train<B: AutodiffBackend>(
    recipe: &Recipe,
    resume: Option<&str>,
    devices: &[B::Device],
) -> Result<TrainSummary> {
    let env = LaunchEnv::from_env()?;
    let group = ProcessGroup::join(env, &recipe.output.dir.display().to_string())?;
    train_in_group::<B>(recipe, resume, devices, group)
}

/// What the loop carries across epochs besides the [`Run`].
#[derive(Default)]
struct Progress {
    last_loss: f64,
    /// The newest checkpoint and its step: an epoch cut short by the data can end
    /// the run after the last periodic checkpoint, and that end must be saved too.
    last_saved: Option<(PathBuf, u64)>,
    zeroshot: Option<ZeroShotMetrics>,
}

/// [`train`] as one rank of `group`.
pub fn train_in_group<B: AutodiffBackend>(
    recipe: &Recipe,
    resume: Option<&str>,
    devices: &[B::Device],
    group: ProcessGroup,
) -> Result<TrainSummary> {
    let mut run = setup::<B>(recipe, resume, devices, group)?;
    let mut log = Logger::new(
        run.leader(),
        &recipe.output.dir,
        run.stop_at,
        run.state.step,
    )?;
    announce(&run, &log);
    let started = Instant::now();
    let start_step = run.state.step;
    let mut progress = Progress {
        last_loss: f64::NAN,
        ..Progress::default()
    };
    while run.state.step < run.stop_at && run.state.data.epoch < recipe.train.epochs {
        if train_one_epoch(&mut run, &mut log, &mut progress)? {
            break;
        }
    }
    log.finish()?;
    finish(&mut run, progress, started, start_step)
}

fn announce<B: AutodiffBackend>(run: &Run<'_, B>, log: &Logger) {
    let (recipe, t, world) = (run.recipe, &run.recipe.train, run.group.world());
    log.say(format!(
        "training {} on {} samples/epoch: {} steps ({}/epoch x {} epochs) of {} samples{}{}",
        recipe.model.arch,
        run.num_samples,
        run.total_steps,
        run.batches_per_epoch,
        t.epochs,
        t.batch_size,
        if t.accum_freq > 1 {
            format!(" in {} micro-batches", t.accum_freq)
        } else {
            String::new()
        },
        if world > 1 {
            format!(
                " over {world} ranks ({:?}, collectives: {}), {} data streams",
                run.group.env.launcher,
                run.group.collectives(),
                run.total_streams
            )
        } else {
            String::new()
        }
    ));
}

/// One epoch (or what is left of it after a resume): every batch the data gives,
/// until the run's last step. True when the run is done.
fn train_one_epoch<B: AutodiffBackend>(
    run: &mut Run<'_, B>,
    log: &mut Logger,
    progress: &mut Progress,
) -> Result<bool> {
    let epoch = run.state.data.epoch;
    let world = run.group.world();
    let mut loader = RankLoader::start(
        &run.loader,
        run.my_streams.clone(),
        run.total_streams,
        &run.positions,
        &run.skips,
    )?;
    let mut got_any = false;
    loop {
        let t0 = Instant::now();
        // Skips passed on the way to this batch belong to the step it feeds.
        run.skips.log_step(run.state.step + 1);
        let next = loader.next_batch().transpose()?;
        if world > 1 {
            // A step happens only if every rank has its share of the batch.
            let mut ready = [if next.is_some() { 1.0f32 } else { 0.0 }];
            run.group
                .all_reduce_sum(&mut ready, "the end-of-epoch check")?;
            if ready[0] < world as f32 {
                break;
            }
        }
        let Some(next) = next else { break };
        got_any = true;
        let wait = t0.elapsed().as_secs_f64();
        let samples = (next.batch.len() * world) as u64;
        let rec = optimisation_step(run, next, progress)?;
        let dt = t0.elapsed().as_secs_f64();
        let rec = StepRecord {
            samples_per_s: samples as f64 / dt,
            data_wait: wait / dt,
            ..rec
        };
        log.step(&rec, dt, wait, samples)?;
        progress.last_loss = rec.loss;
        if after_step(run, log, progress, &rec)? {
            return Ok(true);
        }
    }
    drop(loader);
    end_of_epoch(run, log, epoch, got_any)?;
    Ok(false)
}

/// Forward, backward, the all-reduce, AdamW and the logit-scale clamp on one batch;
/// refuses a non-finite loss or gradient before it touches the weights.
fn optimisation_step<B: AutodiffBackend>(
    run: &mut Run<'_, B>,
    next: RankBatch,
    progress: &Progress,
) -> Result<StepRecord> {
    let t = &run.recipe.train;
    let epoch = run.state.data.epoch;
    let batch = next.batch;
    let samples = batch.len() * run.group.world();
    let weights = run
        .opt
        .weights_in(&run.model, t.precision.compute_dtype())?;
    let slices = split_over_devices(&weights, &batch, run.devices, run.image_size)?;
    let step_index = run.state.step;
    let lr = run.schedule.lr(step_index);
    let beta1 = run.schedule.beta1(step_index, t.beta1);
    let plan = StepPlan {
        accum: t.accum_freq,
        precision: t.precision,
        grad_checkpointing: t.grad_checkpointing,
        pack_grads: run.opt.foreach,
    };
    let mut out = distributed_step(slices, plan, &mut run.group)?;
    let grad_norm = out.grads.global_norm();
    if !out.loss.is_finite() || !grad_norm.is_finite() {
        let last = progress
            .last_saved
            .as_ref()
            .map(|(p, _)| p.clone())
            .or_else(|| checkpoint::resolve(&run.ckpt_dir, "latest").ok())
            .map_or("none yet".into(), |p| p.display().to_string());
        bail!(
            "training diverged at step {} (epoch {epoch}): loss {}, gradient norm {grad_norm}. The model was not updated. \
             Last good checkpoint: {last}. Resume from it with a lower learning rate (--set train.lr=...) \
             or gradient clipping (--set train.grad_clip_norm=1.0).",
            step_index + 1,
            out.loss
        );
    }
    if t.grad_clip_norm > 0.0 {
        out.grads.clip_norm(t.grad_clip_norm, grad_norm);
    }
    run.opt.update(&mut run.model, &out.grads, lr, beta1)?;
    run.model = clamp_logit_scale(run.model.clone());

    run.state.step += 1;
    run.state.data = batch.end;
    run.positions = next.ends;
    run.state.samples_seen += samples as u64;
    Ok(StepRecord {
        step: run.state.step,
        epoch,
        loss: out.loss,
        lr,
        logit_scale: to_scalar(run.model.logit_scale.val().inner()).exp(),
        grad_norm,
        samples_per_s: 0.0,
        data_wait: 0.0,
    })
}

/// The hooks after a step: the log window, the checkpoint, the zero-shot
/// evaluation. True when this was the run's last step.
fn after_step<B: AutodiffBackend>(
    run: &mut Run<'_, B>,
    log: &mut Logger,
    progress: &mut Progress,
    rec: &StepRecord,
) -> Result<bool> {
    let (recipe, step) = (run.recipe, run.state.step);
    if step % recipe.output.log_every == 0 || step == run.stop_at {
        log.log(rec, run.skips.total(), run.stop_at)?;
    }
    let done = step >= run.stop_at;
    if step % recipe.output.checkpoint_every == 0 || done {
        log.flush_metrics()?;
        let saved = checkpoint_now(run)?;
        progress.last_saved = Some((saved, step));
    }
    if let Some(data) = &run.zeroshot_data
        && log.writes()
    {
        let every = recipe.zeroshot.every;
        if (every > 0 && step % every == 0) || done {
            let device = &run.devices[0];
            let m = run_zeroshot(
                &run.model,
                &run.tokenizer,
                data,
                recipe.zeroshot.batch_size,
                device,
            )?;
            log.zero_shot(step, &m)?;
            progress.zeroshot = Some(m);
        }
    }
    Ok(done)
}

/// An epoch's end: refuse one that gave no batch at all, say when the data ran out
/// before `batches_per_epoch`, and move every stream to the next epoch's start.
fn end_of_epoch<B: AutodiffBackend>(
    run: &mut Run<'_, B>,
    log: &Logger,
    epoch: u64,
    got_any: bool,
) -> Result<()> {
    if !got_any && run.state.data.batch == 0 {
        sync_state(&mut run.group, &mut run.state, &run.positions, &run.skips)?;
        bail!(
            "epoch {epoch} produced no batch: every sample was skipped ({:?})",
            run.state.skips
        );
    }
    if run.state.data.batch < run.batches_per_epoch {
        log.say(format!(
            "epoch {epoch} ended after {} of {} batches: the shards hold fewer usable samples than {}",
            run.state.data.batch, run.batches_per_epoch, run.num_samples
        ));
    }
    run.state.data = DataPosition {
        epoch: epoch + 1,
        batch: 0,
        raw_pos: 0,
    };
    run.positions = vec![run.state.data; run.positions.len()];
    Ok(())
}

/// The job's data positions and skips into the state, then rank 0 saves.
fn checkpoint_now<B: AutodiffBackend>(run: &mut Run<'_, B>) -> Result<PathBuf> {
    sync_state(&mut run.group, &mut run.state, &run.positions, &run.skips)?;
    save_checkpoint(run)
}

/// The run's end: the final checkpoint (unless the last step's is it), then
/// `summary.json` and the curves.
fn finish<B: AutodiffBackend>(
    run: &mut Run<'_, B>,
    progress: Progress,
    started: Instant,
    start_step: u64,
) -> Result<TrainSummary> {
    sync_state(&mut run.group, &mut run.state, &run.positions, &run.skips)?;
    let checkpoint = match progress.last_saved {
        Some((p, step)) if step == run.state.step => p,
        _ => save_checkpoint(run)?,
    };
    let steps_run = run.state.step - start_step;
    let summary = TrainSummary {
        steps: run.state.step,
        last_loss: progress.last_loss,
        samples_per_s: (steps_run * run.recipe.train.batch_size as u64) as f64
            / started.elapsed().as_secs_f64(),
        skips: run.state.skips.clone(),
        checkpoint,
        zeroshot: progress.zeroshot,
    };
    if run.leader() {
        let out = &run.recipe.output.dir;
        write_atomic(
            &out.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        crate::plot::write_curves(out)?;
    }
    Ok(summary)
}

/// Bring every rank's stream positions and skip counts into `state` (what a
/// checkpoint records): a collective, so every rank calls it at the same steps.
fn sync_state(
    group: &mut ProcessGroup,
    state: &mut TrainState,
    mine: &[DataPosition],
    skips: &SkipCounter,
) -> Result<()> {
    let local = serde_json::to_vec(&(mine, skips.snapshot()))?;
    let mut all_positions = Vec::new();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for bytes in group.all_gather(&local, "the checkpoint's data positions")? {
        let (p, s): (Vec<DataPosition>, BTreeMap<String, u64>) = serde_json::from_slice(&bytes)?;
        all_positions.extend(p);
        for (reason, n) in s {
            *total.entry(reason).or_default() += n;
        }
    }
    state.data = all_positions[0];
    state.streams = if all_positions.len() > 1 {
        all_positions
    } else {
        Vec::new()
    };
    state.skips = total;
    Ok(())
}

/// Rank 0 writes the checkpoint of `run`'s state; every rank knows where it went.
fn save_checkpoint<B: AutodiffBackend>(run: &Run<'_, B>) -> Result<PathBuf> {
    let (dir, state) = (&run.ckpt_dir, &run.state);
    if run.leader() {
        let keep = run.recipe.output.keep_checkpoints;
        checkpoint::save(dir, &run.model, &run.opt, state, keep)
    } else {
        Ok(dir.join(format!("step_{:08}", state.step)))
    }
}

/// Rows `[k n/D, (k+1) n/D)` of the batch go to device k, with a replica of the
/// weights there (`weights` themselves on the first device).
fn split_over_devices<B: AutodiffBackend>(
    weights: &Clip<B>,
    batch: &realsyn_data::Batch,
    devices: &[B::Device],
    image_size: usize,
) -> Result<Vec<DeviceSlice<B>>> {
    let n = batch.len();
    let per = n / devices.len();
    let ctx = batch.tokens.len() / n;
    let px = 3 * image_size * image_size;
    devices
        .iter()
        .enumerate()
        .map(|(k, dev)| {
            let rows = k * per..(k + 1) * per;
            let images = Tensor::<B, 4>::from_data(
                TensorData::new(
                    batch.images[rows.start * px..rows.end * px].to_vec(),
                    [per, 3, image_size, image_size],
                ),
                dev,
            );
            let tokens = Tensor::<B, 2, Int>::from_data(
                TensorData::new(
                    batch.tokens[rows.start * ctx..rows.end * ctx].to_vec(),
                    [per, ctx],
                ),
                dev,
            );
            let model = if k == 0 {
                weights.clone()
            } else {
                replicate(weights, dev)?
            };
            Ok(DeviceSlice {
                model,
                images,
                tokens,
            })
        })
        .collect()
}

fn run_zeroshot<B: AutodiffBackend>(
    model: &Clip<B>,
    tokenizer: &ClipTokenizer,
    data: &LabelledDataset,
    batch: usize,
    device: &B::Device,
) -> Result<ZeroShotMetrics> {
    let frozen = model.valid();
    zero_shot_accuracy(&frozen, tokenizer, data, batch, device)
}
