//! A run's setup, before its first step (open_clip's `main` up to the loop): check
//! the batch against the job, resolve the data and the schedule, build or resume the
//! model, optimiser and train state, broadcast rank 0's weights, and configure this
//! rank's data streams. The loop (`trainer`) takes the resulting [`Run`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use realsyn_data::labelled::LabelledDataset;
use realsyn_data::loader::{DataPosition, LoaderConfig};
use realsyn_data::wds::{ShardList, SkipCounter, SkipLog};
use realsyn_data::{ImageTransform, RandomResizedCrop, TextKeys};
use realsyn_io::fs::write_atomic;
use realsyn_model::{Clip, ClipConfig, ClipTokenizer};

use crate::checkpoint::{self, TrainState};
use crate::distributed::{ProcessGroup, streams_of_rank};
use crate::optim::{AdamW, AdamWConfig, track_gradients};
use crate::recipe::Recipe;
use crate::schedule::Schedule;

/// Everything the loop holds from step to step.
pub(crate) struct Run<'r, B: AutodiffBackend> {
    pub recipe: &'r Recipe,
    pub devices: &'r [B::Device],
    pub group: ProcessGroup,
    pub model: Clip<B>,
    pub opt: AdamW<B::InnerBackend>,
    /// What a checkpoint records (step, data positions, skips).
    pub state: TrainState,
    pub schedule: Schedule,
    pub num_samples: u64,
    pub batches_per_epoch: u64,
    pub total_steps: u64,
    /// `train.max_steps` if set, else `total_steps`.
    pub stop_at: u64,
    pub ckpt_dir: PathBuf,
    pub loader: LoaderConfig,
    /// This rank's data streams of `total_streams`, and where each stands.
    pub my_streams: Range<usize>,
    pub total_streams: usize,
    pub positions: Vec<DataPosition>,
    pub skips: SkipCounter,
    pub tokenizer: Arc<ClipTokenizer>,
    pub image_size: usize,
    /// The zero-shot hook's dataset (`[zeroshot] data`).
    pub zeroshot_data: Option<LabelledDataset>,
}

impl<B: AutodiffBackend> Run<'_, B> {
    pub fn leader(&self) -> bool {
        self.group.is_leader()
    }
}

/// Set up a run of `recipe` as one rank of `group`; `resume` is `latest` or a
/// checkpoint folder.
pub(crate) fn setup<'r, B: AutodiffBackend>(
    recipe: &'r Recipe,
    resume: Option<&str>,
    devices: &'r [B::Device],
    mut group: ProcessGroup,
) -> Result<Run<'r, B>> {
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
    let mut opt = AdamW::<B::InnerBackend>::for_device(adamw, &t.device);
    opt.foreach = t.foreach.unwrap_or(opt.foreach);
    let (mut model, state) = match resume {
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
    // DDP's start: every replica begins from rank 0's weights; the step's
    // collectives move onto the GPUs where NCCL can carry them.
    model = group.broadcast_parameters(model)?;
    group.use_device::<B::InnerBackend>(device)?;
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
    let positions: Vec<DataPosition> = if state.streams.is_empty() {
        vec![state.data]
    } else {
        state.streams[my_streams.clone()].to_vec()
    };

    // Skips are logged with the step whose batch passes them. A checkpoint covers the
    // skips of its steps, and one written at an epoch's end (the run's last, after the
    // data ran out) also those after the epoch's last batch, logged as the next step.
    let at_epoch_start = state.data.batch == 0 && state.data.raw_pos == 0;
    let logged_through = state.step + u64::from(state.step > 0 && at_epoch_start);
    let skips = SkipCounter::new().with_log(open_skip_log(out, rank, world, logged_through)?);
    if leader {
        // The checkpoint holds the job's total; the other ranks count from zero.
        skips.restore(&state.skips);
    }
    let loader = LoaderConfig {
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
    Ok(Run {
        recipe,
        devices,
        group,
        model,
        opt,
        state,
        schedule,
        num_samples,
        batches_per_epoch,
        total_steps,
        stop_at,
        ckpt_dir,
        loader,
        my_streams,
        total_streams,
        positions,
        skips,
        tokenizer,
        image_size,
        zeroshot_data,
    })
}

/// This rank's list of skipped samples (`skips.jsonl` for rank 0, `skips.rank-N.jsonl`
/// for the others), cut back to the checkpoint's step as the counts are. Rank 0 also
/// cuts the lists of ranks a resume on fewer ranks leaves behind.
fn open_skip_log(out: &Path, rank: usize, world: usize, step: u64) -> Result<SkipLog> {
    let name = |r: usize| match r {
        0 => "skips.jsonl".to_string(),
        r => format!("skips.rank-{r}.jsonl"),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    if rank == 0 {
        for entry in std::fs::read_dir(out)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            let other = file
                .strip_prefix("skips.rank-")
                .and_then(|r| r.strip_suffix(".jsonl"))
                .and_then(|r| r.parse::<usize>().ok());
            if other.is_some_and(|r| r >= world) {
                drop(SkipLog::open(&out.join(&file), step)?);
            }
        }
    }
    SkipLog::open(&out.join(name(rank)), step)
}
