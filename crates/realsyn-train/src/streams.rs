//! The data of one rank: the global batch is cut into `streams` fixed data
//! streams (each a loader over every `streams`-th shard with its own seeds, i.e.
//! a loader of "rank s of world streams"), and each rank reads a contiguous block
//! of them.
//!
//! Why streams and not simply "rank r of world W": the global batch, the stream
//! positions in a checkpoint and so the whole run are then the same for every
//! world size that divides the stream count. A job checkpointed on 8 GPUs resumes
//! on 4 or 16, and 2 or 4 processes reproduce a 1-process run (the test of
//! `realsyn-cli/tests/distributed.rs`). With one stream this is exactly the
//! single-process loader.

use std::ops::Range;

use anyhow::{Result, bail};
use realsyn_data::loader::{Batch, DataPosition, EpochLoader, LoaderConfig};
use realsyn_data::wds::SkipCounter;

pub struct RankLoader {
    loaders: Vec<EpochLoader>,
}

/// One step's share of this rank: its streams' batches concatenated in stream
/// order, and each stream's position after it.
pub struct RankBatch {
    pub batch: Batch,
    pub ends: Vec<DataPosition>,
}

impl RankLoader {
    /// Start this rank's `streams` (of `total` in the run) at `positions` (one per
    /// stream of this rank). `base.batch_size` is the global batch.
    pub fn start(
        base: &LoaderConfig,
        streams: Range<usize>,
        total: usize,
        positions: &[DataPosition],
        skips: &SkipCounter,
    ) -> Result<Self> {
        if base.batch_size % total != 0 {
            bail!(
                "the global batch of {} cannot be cut into {total} equal data streams: make train.batch_size a multiple of data.streams",
                base.batch_size
            );
        }
        if positions.len() != streams.len() {
            bail!(
                "{} stream positions for {} streams",
                positions.len(),
                streams.len()
            );
        }
        let workers = (base.workers / streams.len()).max(1);
        let loaders = streams
            .zip(positions)
            .map(|(s, pos)| {
                let cfg = LoaderConfig {
                    rank: s,
                    world: total,
                    batch_size: base.batch_size / total,
                    workers,
                    ..base.clone()
                };
                EpochLoader::start(cfg, *pos, skips.clone())
            })
            .collect::<Result<_>>()?;
        Ok(Self { loaders })
    }

    /// The next step's share, or `None` when any stream's epoch ran out.
    pub fn next_batch(&mut self) -> Option<Result<RankBatch>> {
        let mut parts = Vec::with_capacity(self.loaders.len());
        for l in &mut self.loaders {
            match l.next()? {
                Ok(b) => parts.push(b),
                Err(e) => return Some(Err(e)),
            }
        }
        let ends = parts.iter().map(|b| b.end).collect();
        let mut parts = parts.into_iter();
        let mut batch = parts.next().expect("at least one stream");
        for b in parts {
            batch.images.extend(b.images);
            batch.texts.extend(b.texts);
            batch.tokens.extend(b.tokens);
            batch.keys.extend(b.keys);
        }
        Some(Ok(RankBatch { batch, ends }))
    }
}
