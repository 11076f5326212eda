//! The training loop: data -> step -> AdamW -> logs -> checkpoints, resumable.
//!
//! In a job of several processes (`distributed`) every rank runs this loop on its
//! own data streams and replica; the step's collectives keep the replicas equal,
//! and rank 0 alone writes logs, checkpoints and evaluations.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use realsyn_data::loader::{DataPosition, LoaderConfig};
use realsyn_data::wds::{ShardList, SkipCounter};
use realsyn_data::{ImageTransform, RandomResizedCrop, TextKeys};
use realsyn_eval::{LabelledDataset, ZeroShotMetrics, zero_shot_eval};
use realsyn_io::fs::write_atomic;
use realsyn_model::common::batch::to_scalar;
use realsyn_model::{Clip, ClipConfig, ClipTokenizer};
use serde::Serialize;

use crate::checkpoint::{self, TrainState};
use crate::distributed::{LaunchEnv, ProcessGroup, streams_of_rank};
use crate::metrics::{StepRecord, ZeroShotRecord};
use crate::optim::{AdamW, AdamWConfig, clamp_logit_scale, track_gradients};
use crate::recipe::Recipe;
use crate::step::{DeviceSlice, distributed_step, replicate};
use crate::streams::RankLoader;
use crate::tensorboard::EventWriter;

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

/// [`train`] as one rank of `group`.
pub fn train_in_group<B: AutodiffBackend>(
    recipe: &Recipe,
    resume: Option<&str>,
    devices: &[B::Device],
    mut group: ProcessGroup,
) -> Result<TrainSummary> {
    let device = devices.first().context("no device to train on")?;
    let (rank, world, leader) = (group.rank(), group.world(), group.is_leader());
    if recipe.train.batch_size % (world * devices.len() * recipe.train.accum_freq) != 0 {
        bail!(
            "train.batch_size ({}) must split evenly over {world} ranks x {} devices x {} micro-batches",
            recipe.train.batch_size,
            devices.len(),
            recipe.train.accum_freq
        );
    }
    let out = &recipe.output.dir;
    if leader {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        write_atomic(&out.join("config.toml"), recipe.to_toml()?.as_bytes())?;
    }
    let ckpt_dir = out.join("checkpoints");
    let t = &recipe.train;

    // Data.
    let shards = ShardList::resolve(&recipe.data.train)?;
    let num_samples = match (recipe.data.num_samples, shards.num_samples()) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => bail!(
            "the sample count of {} is unknown: put a sizes.json beside the shards or set data.num_samples",
            recipe.data.train
        ),
    };
    let batches_per_epoch = num_samples / t.batch_size as u64;
    if batches_per_epoch == 0 {
        bail!(
            "{num_samples} samples do not fill one batch of {}",
            t.batch_size
        );
    }
    let total_steps = batches_per_epoch * t.epochs;
    let schedule = recipe.schedule(total_steps);
    schedule.validate()?;
    let stop_at = if t.max_steps > 0 {
        t.max_steps.min(total_steps)
    } else {
        total_steps
    };

    // Model, optimiser, state.
    let adamw = AdamWConfig {
        weight_decay: t.weight_decay,
        beta1: t.beta1,
        beta2: t.beta2,
        eps: t.eps,
    };
    let mut opt = AdamW::<B::InnerBackend>::new(adamw);
    let (mut model, mut state) = match resume {
        Some(which) => {
            let dir = checkpoint::resolve(&ckpt_dir, which)?;
            let loaded = checkpoint::load::<B>(&dir, device)?;
            opt.load_state_dict(&loaded.model, loaded.optimizer, loaded.state.step, device)?;
            eprintln!(
                "resuming from {} (step {})",
                dir.display(),
                loaded.state.step
            );
            if loaded.state.total_steps != total_steps {
                bail!(
                    "the checkpoint's schedule spans {} steps, this recipe's {total_steps}: resume with the recipe it was trained with ({})",
                    loaded.state.total_steps,
                    out.join("config.toml").display()
                );
            }
            (loaded.model, loaded.state)
        }
        None => {
            let config = ClipConfig::from_name_or_path(&recipe.model.arch)?;
            B::seed(device, t.seed);
            let model = match &recipe.model.pretrained {
                Some(p) => Clip::<B>::load(p, Some(&recipe.model.arch), device)?,
                None => Clip::<B>::new(&config, device),
            };
            let streams = match recipe.data.streams {
                0 => world,
                n => n,
            };
            let state = TrainState {
                step: 0,
                data: DataPosition::default(),
                streams: if streams > 1 {
                    vec![DataPosition::default(); streams]
                } else {
                    Vec::new()
                },
                samples_seen: 0,
                skips: BTreeMap::new(),
                total_steps,
            };
            (model, state)
        }
    };
    // DDP's start: every replica begins from rank 0's weights.
    model = group.broadcast_parameters(model)?;
    model = track_gradients(model)?;
    let cfg = model.config.clone();
    let image_size = cfg.vision_cfg.image_size;
    let tokenizer = Arc::new(ClipTokenizer::for_text_tower(&cfg.text_cfg)?);

    // The data streams (see `streams`): fixed when the run starts, kept on resume.
    let total_streams = state.streams.len().max(1);
    if recipe.data.streams > 0 && recipe.data.streams != total_streams {
        bail!(
            "the checkpoint reads {total_streams} data streams and the recipe says data.streams = {}: \
             a run keeps its streams; resume without changing it",
            recipe.data.streams
        );
    }
    let my_streams = streams_of_rank(total_streams, rank, world)?;
    let mut positions: Vec<DataPosition> = if state.streams.is_empty() {
        vec![state.data]
    } else {
        state.streams[my_streams.clone()].to_vec()
    };

    let skips = SkipCounter::new();
    if leader {
        // The checkpoint holds the job's total; the other ranks count from zero.
        skips.restore(&state.skips);
    }
    let loader_cfg = LoaderConfig {
        shards: shards.shards.clone(),
        rank: 0,
        world: 1,
        batch_size: t.batch_size,
        batches_per_epoch,
        seed: t.seed,
        shuffle_buffer: recipe.data.shuffle_buffer,
        resampled: recipe.data.resampled,
        workers: recipe.data.workers,
        prefetch: recipe.data.prefetch,
        text_keys: TextKeys::parse(&recipe.data.text_keys)?,
        transform: ImageTransform::Train(RandomResizedCrop::new(image_size as u32)),
        tokenize: Some({
            let tok = tokenizer.clone();
            Arc::new(move |texts: &[String]| tok.tokenize_batch(texts).concat())
        }),
    };
    let zeroshot_data = match &recipe.zeroshot.data {
        Some(root) => Some(LabelledDataset::open(root, "test")?),
        None => None,
    };

    // Logs (rank 0's).
    let mut logs = if leader {
        Some(Logs {
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
        progress_bar(stop_at, state.step)
    } else {
        ProgressBar::hidden()
    };
    let say = |msg: String| {
        if !leader {
            return; // rank 0 speaks for the job
        }
        if bar.is_hidden() {
            eprintln!("{msg}");
        } else {
            bar.println(msg);
        }
    };
    say(format!(
        "training {} on {num_samples} samples/epoch: {total_steps} steps ({batches_per_epoch}/epoch x {} epochs) of {} samples{}{}",
        recipe.model.arch,
        t.epochs,
        t.batch_size,
        if t.accum_freq > 1 {
            format!(" in {} micro-batches", t.accum_freq)
        } else {
            String::new()
        },
        if world > 1 {
            format!(
                " over {world} ranks ({:?}), {total_streams} data streams",
                group.env.launcher
            )
        } else {
            String::new()
        }
    ));

    let started = Instant::now();
    let start_step = state.step;
    let mut last_loss = f64::NAN;
    let mut last_saved: Option<PathBuf> = None;
    // The step of `last_saved`: an epoch cut short by the data can end the run
    // after the last periodic checkpoint, and that end must be saved too.
    let mut last_saved_step = None;
    let mut zeroshot: Option<ZeroShotMetrics> = None;
    let (mut window_time, mut window_wait, mut window_samples) = (0.0f64, 0.0f64, 0u64);

    'epochs: while state.step < stop_at {
        let epoch = state.data.epoch;
        if epoch >= t.epochs {
            break;
        }
        let mut loader = RankLoader::start(
            &loader_cfg,
            my_streams.clone(),
            total_streams,
            &positions,
            &skips,
        )?;
        let mut got_any = false;
        loop {
            let t0 = Instant::now();
            let next = loader.next_batch().transpose()?;
            if world > 1 {
                // A step happens only if every rank has its share of the batch.
                let mut ready = [if next.is_some() { 1.0f32 } else { 0.0 }];
                group.all_reduce_sum(&mut ready, "the end-of-epoch check")?;
                if ready[0] < world as f32 {
                    break;
                }
            }
            let Some(next) = next else { break };
            let batch = next.batch;
            got_any = true;
            let wait = t0.elapsed().as_secs_f64();
            let n = batch.len() * world;
            let slices = split_over_devices(&model, &batch, devices, image_size)?;

            let step_index = state.step;
            let lr = schedule.lr(step_index);
            let beta1 = schedule.beta1(step_index, t.beta1);
            let mut out_step = distributed_step(slices, t.accum_freq, t.precision, &mut group)?;
            let grad_norm = out_step.grads.global_norm();
            if !out_step.loss.is_finite() || !grad_norm.is_finite() {
                let last = last_saved
                    .clone()
                    .or_else(|| checkpoint::resolve(&ckpt_dir, "latest").ok())
                    .map_or("none yet".into(), |p| p.display().to_string());
                bail!(
                    "training diverged at step {} (epoch {epoch}): loss {}, gradient norm {grad_norm}. The model was not updated. \
                     Last good checkpoint: {last}. Resume from it with a lower learning rate (--set train.lr=...) \
                     or gradient clipping (--set train.grad_clip_norm=1.0).",
                    step_index + 1,
                    out_step.loss
                );
            }
            if t.grad_clip_norm > 0.0 {
                out_step.grads.clip_norm(t.grad_clip_norm, grad_norm);
            }
            opt.update(&mut model, &out_step.grads, lr, beta1)?;
            model = clamp_logit_scale(model);

            state.step += 1;
            state.data = batch.end;
            positions = next.ends;
            state.samples_seen += n as u64;
            last_loss = out_step.loss;
            let dt = t0.elapsed().as_secs_f64();
            window_time += dt;
            window_wait += wait;
            window_samples += n as u64;
            let logit_scale = to_scalar(model.logit_scale.val().inner()).exp();
            let rec = StepRecord {
                step: state.step,
                epoch,
                loss: out_step.loss,
                lr,
                logit_scale,
                grad_norm,
                samples_per_s: n as f64 / dt,
                data_wait: wait / dt,
            };
            if let Some(l) = &mut logs {
                writeln!(l.metrics, "{}", serde_json::to_string(&rec)?)?;
            }
            bar.set_position(state.step);
            bar.set_message(format!(
                "epoch {epoch} loss {:.4} lr {lr:.2e}",
                out_step.loss
            ));

            if state.step % recipe.output.log_every == 0 || state.step == stop_at {
                let s = state.step;
                if let Some(Logs { tb, metrics }) = &mut logs {
                    tb.scalar("train/loss", out_step.loss, s)?;
                    tb.scalar("train/lr", lr, s)?;
                    tb.scalar("train/logit_scale", logit_scale, s)?;
                    tb.scalar("train/grad_norm", grad_norm, s)?;
                    tb.scalar(
                        "train/samples_per_s",
                        window_samples as f64 / window_time,
                        s,
                    )?;
                    tb.scalar("train/data_wait_fraction", window_wait / window_time, s)?;
                    tb.scalar("train/skipped_samples", skips.total() as f64, s)?;
                    tb.flush()?;
                    metrics.flush()?;
                }
                if bar.is_hidden() {
                    say(format!(
                        "step {s}/{stop_at} epoch {epoch} loss {:.4} lr {lr:.3e} scale {logit_scale:.2} {:.1} samples/s data-wait {:.0}%",
                        out_step.loss,
                        window_samples as f64 / window_time,
                        100.0 * window_wait / window_time
                    ));
                }
                (window_time, window_wait, window_samples) = (0.0, 0.0, 0);
            }
            let done = state.step >= stop_at;
            if state.step % recipe.output.checkpoint_every == 0 || done {
                if let Some(l) = &mut logs {
                    l.metrics.flush()?;
                }
                sync_state(&mut group, &mut state, &positions, &skips)?;
                last_saved = Some(save_checkpoint(
                    leader, &ckpt_dir, &model, &opt, &state, recipe,
                )?);
                last_saved_step = Some(state.step);
            }
            if let (Some(data), Some(Logs { tb, metrics })) = (&zeroshot_data, &mut logs) {
                let every = recipe.zeroshot.every;
                if (every > 0 && state.step % every == 0) || done {
                    let m =
                        run_zeroshot(&model, &tokenizer, data, recipe.zeroshot.batch_size, device)?;
                    tb.scalar("zeroshot/acc1", m.acc1, state.step)?;
                    tb.scalar("zeroshot/acc5", m.acc5, state.step)?;
                    tb.scalar(
                        "zeroshot/mean_per_class_recall",
                        m.mean_per_class_recall,
                        state.step,
                    )?;
                    let rec = ZeroShotRecord {
                        step: state.step,
                        zeroshot: &m,
                    };
                    writeln!(metrics, "{}", serde_json::to_string(&rec)?)?;
                    say(format!(
                        "step {}: zero-shot top-1 {:.2}% top-5 {:.2}% on {} images",
                        state.step,
                        100.0 * m.acc1,
                        100.0 * m.acc5,
                        m.n
                    ));
                    zeroshot = Some(m);
                }
            }
            if done {
                break 'epochs;
            }
        }
        drop(loader);
        if !got_any && state.data.batch == 0 {
            sync_state(&mut group, &mut state, &positions, &skips)?;
            bail!(
                "epoch {epoch} produced no batch: every sample was skipped ({:?})",
                state.skips
            );
        }
        if state.data.batch < batches_per_epoch {
            say(format!(
                "epoch {epoch} ended after {} of {batches_per_epoch} batches: the shards hold fewer usable samples than {num_samples}",
                state.data.batch
            ));
        }
        state.data = DataPosition {
            epoch: epoch + 1,
            batch: 0,
            raw_pos: 0,
        };
        positions = vec![state.data; positions.len()];
    }
    bar.finish_and_clear();
    if let Some(l) = &mut logs {
        l.tb.flush()?;
    }
    sync_state(&mut group, &mut state, &positions, &skips)?;
    let checkpoint = match last_saved {
        Some(p) if last_saved_step == Some(state.step) => p,
        _ => save_checkpoint(leader, &ckpt_dir, &model, &opt, &state, recipe)?,
    };
    let steps_run = state.step - start_step;
    let summary = TrainSummary {
        steps: state.step,
        last_loss,
        samples_per_s: (steps_run * t.batch_size as u64) as f64 / started.elapsed().as_secs_f64(),
        skips: state.skips.clone(),
        checkpoint,
        zeroshot,
    };
    if leader {
        write_atomic(
            &out.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        crate::plot::write_curves(out)?;
    }
    Ok(summary)
}

/// Rank 0's log writers.
struct Logs {
    tb: EventWriter,
    metrics: std::fs::File,
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

/// Rank 0 writes the checkpoint; every rank knows where it went.
fn save_checkpoint<B: AutodiffBackend>(
    leader: bool,
    dir: &std::path::Path,
    model: &Clip<B>,
    opt: &AdamW<B::InnerBackend>,
    state: &TrainState,
    recipe: &Recipe,
) -> Result<PathBuf> {
    if leader {
        checkpoint::save(dir, model, opt, state, recipe.output.keep_checkpoints)
    } else {
        Ok(dir.join(format!("step_{:08}", state.step)))
    }
}

/// Rows `[k n/D, (k+1) n/D)` of the batch go to device k, with a replica of the
/// model there (the master itself on the first device).
fn split_over_devices<B: AutodiffBackend>(
    model: &Clip<B>,
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
                model.clone()
            } else {
                replicate(model, dev)?
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
    zero_shot_eval(&frozen, tokenizer, data, batch, device)
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
