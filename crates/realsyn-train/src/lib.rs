//! # realsyn-train
//!
//! What `realsyn train` runs: CLIP pre-training as open_clip does it, on WebDataset
//! shards read by `realsyn-data`, for the models of `realsyn-model`.
//!
//! - `recipe`: the TOML recipe (model, data, optimiser, schedule, output) and
//!   command-line overrides of any field.
//! - `schedule`: OneCycle (PyTorch's semantics), cosine with warmup, constant.
//! - `optim`: AdamW with open_clip's weight-decay groups, over named gradients.
//! - `flat`: many tensors as one aligned flat buffer (the optimiser's groups, the
//!   NCCL all-reduce), sliced back out without copies.
//! - `step`: one optimisation step's forward/backward, with gradient accumulation
//!   that keeps the contrastive loss exact over the whole batch.
//! - `distributed`: data parallelism across processes (torchrun / Slurm launch,
//!   NCCL between GPUs, ring all-reduce and all-gather over TCP otherwise), as
//!   PyTorch DDP + open_clip.
//! - `streams`: a rank's share of the global batch as fixed data streams, so a run
//!   is the same on any number of ranks that divides them.
//! - `checkpoint`: atomic checkpoints holding everything an exact resume needs.
//! - `tensorboard`: a TensorBoard event-file writer (scalars, images).
//! - `metrics`: the typed records of `metrics.jsonl`, written and read back.
//! - `plot`: `curves.svg` (loss, lr, zero-shot) at the end of a run.
//! - `setup`: a run before its first step (data, schedule, model, optimiser, state,
//!   this rank's streams).
//! - `logger`: the progress bar, `metrics.jsonl` and TensorBoard (rank 0).
//! - `trainer`: the loop (`train_one_epoch`, the optimisation step, the hooks after
//!   it: log, checkpoint, zero-shot) and the run's summary.
//! - `zero_shot`: the zero-shot hook (the model library's classifier and logits, the
//!   evaluator's metrics from `realsyn-data`),
//!   so training does not need the evaluator.
//!
//! Depends on the model library, `realsyn-data` and `realsyn-io`; must not depend on
//! the evaluator, the builder, the runtime or clap (the CLI parses for it).

pub mod checkpoint;
pub mod distributed;
pub mod flat;
mod logger;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod recipe;
pub mod schedule;
mod setup;
pub mod step;
pub mod streams;
pub mod tensorboard;
pub mod trainer;
pub mod zero_shot;

pub use recipe::Recipe;
pub use trainer::{TrainSummary, train, train_in_group};
