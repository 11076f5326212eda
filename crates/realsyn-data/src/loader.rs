//! The training data pipeline: shards -> samples -> shuffle buffer -> decode and
//! augment on a thread pool -> fixed-size batches, prefetched on a bounded queue so
//! the device never waits on the host.
//!
//! Everything random is a pure function of `(seed, epoch, position)`: the shard order,
//! the shuffle buffer, and for each sample the text drawn from its candidates and
//! its crop. So the batch sequence does not depend on thread timing, and a resumed
//! run that skips to a saved [`DataPosition`] sees exactly the batches the
//! uninterrupted run saw.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Result, bail};
use crossbeam_channel::{Receiver, Sender, bounded};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::image::IMAGE_EXTENSIONS;
use crate::image::{ImageTransform, normalize_chw_into, with_decoded_rgb8};
use crate::texts::TextKeys;
use crate::wds::{RawSample, SkipCounter, read_shard};

/// Turns a batch of texts into `[n, context]` token ids, run on the loader threads.
pub type Tokenize = Arc<dyn Fn(&[String]) -> Vec<i32> + Send + Sync>;

#[derive(Clone)]
pub struct LoaderConfig {
    /// Every shard of the dataset; this rank reads its share (see `rank`/`world`).
    pub shards: Vec<PathBuf>,
    pub rank: usize,
    pub world: usize,
    /// Samples per batch on this rank.
    pub batch_size: usize,
    pub batches_per_epoch: u64,
    pub seed: u64,
    /// Samples held by the shuffle buffer (webdataset's `shuffle(n)`); 0 or 1 = off.
    pub shuffle_buffer: usize,
    /// Draw shards with replacement (open_clip's `--dataset-resampled`).
    pub resampled: bool,
    /// Decode threads.
    pub workers: usize,
    /// Decoded batches held ready ahead of the consumer.
    pub prefetch: usize,
    pub text_keys: TextKeys,
    pub transform: ImageTransform,
    pub tokenize: Option<Tokenize>,
}

/// Where a run stands in its data: `raw_pos` raw samples of epoch `epoch` have been
/// consumed by `batch` batches. Saved in checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub batch: u64,
    pub raw_pos: u64,
}

pub struct Batch {
    pub epoch: u64,
    /// 0-based index of this batch in its epoch.
    pub index: u64,
    /// `[n, 3, size, size]` normalised pixels, row-major.
    pub images: Vec<f32>,
    pub texts: Vec<String>,
    /// `[n, context]` ids when the config has a tokenizer.
    pub tokens: Vec<i32>,
    pub keys: Vec<String>,
    /// The position after this batch; resuming there continues with the next one.
    pub end: DataPosition,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.texts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

/// One epoch of batches, from `start` on. Iterate it; it ends after
/// `batches_per_epoch` batches or when non-resampled shards run out.
pub struct EpochLoader {
    rx: Receiver<Result<Assembled>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    skips: SkipCounter,
}

/// Samples dropped while reading or decoding, as (reason, what).
type Skipped = Vec<(String, String)>;

/// What the shard reader sends, numbered in epoch order: a raw sample, or a
/// shard-level skip (an unreadable shard, a truncated tar) placed before sample
/// `seq`, so it is counted with the batch that passes that point like any other.
enum Raw {
    Sample(u64, RawSample),
    Skip(u64, String, String),
}

/// What the batcher sends: a batch with the samples skipped before its end (in raw
/// order), or at the end of the epoch the samples skipped after its last batch.
/// The skips are counted when the consumer takes the message, not when the batcher
/// decodes ahead, so a checkpoint's counts cover exactly the data it has consumed
/// and a resumed run counts each skip once.
enum Assembled {
    Batch(Batch, Skipped),
    Tail(Skipped),
}

impl EpochLoader {
    pub fn start(cfg: LoaderConfig, start: DataPosition, skips: SkipCounter) -> Result<Self> {
        if cfg.batch_size == 0 {
            bail!("batch size must be positive");
        }
        if cfg.world == 0 || cfg.rank >= cfg.world || cfg.shards.len() < cfg.world {
            bail!(
                "{} shards cannot be split over {} ranks (rank {}): write more, smaller shards",
                cfg.shards.len(),
                cfg.world,
                cfg.rank
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = Arc::new(cfg);
        let (raw_tx, raw_rx) = bounded::<Raw>(cfg.batch_size * 2);
        let (tx, rx) = bounded(cfg.prefetch.max(1));
        let reader = {
            let (cfg, stop) = (cfg.clone(), stop.clone());
            std::thread::Builder::new()
                .name("realsyn-shard-reader".into())
                .spawn(move || read_epoch(&cfg, start, &raw_tx, &stop))?
        };
        let assembler = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("realsyn-batcher".into())
                .spawn(move || assemble(&cfg, start, &raw_rx, &tx, &stop))?
        };
        Ok(Self {
            rx,
            stop,
            threads: vec![reader, assembler],
            skips,
        })
    }
}

impl Iterator for EpochLoader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        loop {
            match self.rx.recv().ok()? {
                Err(e) => return Some(Err(e)),
                Ok(Assembled::Batch(batch, skipped)) => {
                    for (reason, what) in skipped {
                        self.skips.skip(&reason, &what);
                    }
                    return Some(Ok(batch));
                }
                Ok(Assembled::Tail(skipped)) => {
                    for (reason, what) in skipped {
                        self.skips.skip(&reason, &what);
                    }
                }
            }
        }
    }
}

impl Drop for EpochLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing our end fails the batcher's next send; the batcher then drops the
        // raw-sample channel, and the reader (which also checks `stop`) ends.
        self.rx = crossbeam_channel::never();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// SplitMix64 over the parts: independent, reproducible streams per purpose.
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut z = 0x9E37_79B9_7F4A_7C15u64;
    for p in parts {
        z = z.wrapping_add(*p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

const SHARD_STREAM: u64 = 1;
const SHUFFLE_STREAM: u64 = 2;
const SAMPLE_STREAM: u64 = 3;

/// This rank's shard sequence for `epoch`: the full list shuffled with the epoch's
/// seed (same on every rank), then every `world`-th; or, resampled, an endless
/// draw with replacement.
fn shard_order(cfg: &LoaderConfig, epoch: u64) -> Box<dyn Iterator<Item = PathBuf> + Send> {
    if cfg.resampled {
        let mut rng =
            StdRng::seed_from_u64(mix_seed(&[cfg.seed, SHARD_STREAM, epoch, cfg.rank as u64]));
        let shards = cfg.shards.clone();
        Box::new(std::iter::repeat_with(move || {
            shards[rng.random_range(0..shards.len())].clone()
        }))
    } else {
        let mut shards = cfg.shards.clone();
        shards.shuffle(&mut StdRng::seed_from_u64(mix_seed(&[
            cfg.seed,
            SHARD_STREAM,
            epoch,
        ])));
        Box::new(shards.into_iter().skip(cfg.rank).step_by(cfg.world))
    }
}

/// Producer: raw samples in epoch order, numbered after the shuffle buffer. The
/// first `start.raw_pos` are passed over (they were consumed before a resume); they
/// still go through the buffer so that its state matches the original run. Shard
/// skips go down the same channel, numbered by the next sample, and are counted by
/// the consumer (not here, where reading runs ahead of what a checkpoint covers).
fn read_epoch(cfg: &LoaderConfig, start: DataPosition, tx: &Sender<Raw>, stop: &AtomicBool) {
    let mut rng = StdRng::seed_from_u64(mix_seed(&[
        cfg.seed,
        SHUFFLE_STREAM,
        start.epoch,
        cfg.rank as u64,
    ]));
    let mut buffer: Vec<RawSample> = Vec::with_capacity(cfg.shuffle_buffer);
    let seq = std::cell::Cell::new(0u64);
    let emit = |s: RawSample| -> bool {
        let n = seq.get();
        seq.set(n + 1);
        !stop.load(Ordering::Relaxed) && (n < start.raw_pos || tx.send(Raw::Sample(n, s)).is_ok())
    };
    // A skip before sample `seq`: already counted before a resume when below its
    // position.
    let shard_skips = SkipCounter::recording();
    let hand_on = || -> bool {
        shard_skips.take_events().into_iter().all(|(reason, what)| {
            let n = seq.get();
            !stop.load(Ordering::Relaxed)
                && (n < start.raw_pos || tx.send(Raw::Skip(n, reason, what)).is_ok())
        })
    };
    for shard in shard_order(cfg, start.epoch) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        for sample in read_shard(&shard, &shard_skips) {
            if !hand_on() {
                return;
            }
            if cfg.shuffle_buffer <= 1 {
                if !emit(sample) {
                    return;
                }
                continue;
            }
            buffer.push(sample);
            if buffer.len() >= cfg.shuffle_buffer {
                let k = rng.random_range(0..buffer.len());
                if !emit(buffer.swap_remove(k)) {
                    return;
                }
            }
        }
        if !hand_on() {
            return;
        }
    }
    while !buffer.is_empty() {
        let k = rng.random_range(0..buffer.len());
        if !emit(buffer.swap_remove(k)) {
            return;
        }
    }
}

struct Decoded {
    seq: u64,
    key: String,
    /// The transformed sample as 8-bit RGB: normalised into the batch buffer later,
    /// so no per-sample f32 buffer (600 KB at 224 px) is allocated and freed.
    pixels: image::RgbImage,
    text: String,
}

/// One sample -> (pixels, text), or the reason it is skipped.
fn decode(
    cfg: &LoaderConfig,
    epoch: u64,
    seq: u64,
    s: &RawSample,
) -> Result<Decoded, &'static str> {
    let mut rng = StdRng::seed_from_u64(mix_seed(&[
        cfg.seed,
        SAMPLE_STREAM,
        epoch,
        cfg.rank as u64,
        seq,
    ]));
    let candidates = cfg.text_keys.candidates(s);
    if candidates.is_empty() {
        return Err("no text");
    }
    let text = candidates[rng.random_range(0..candidates.len())].clone();
    let bytes = s.first_of(IMAGE_EXTENSIONS).ok_or("no image")?;
    let pixels = with_decoded_rgb8(bytes, |raw, w, h| {
        cfg.transform.pixels_rgb8(raw, w, h, &mut rng)
    })
    .ok()
    .and_then(Result::ok)
    .ok_or("corrupt image")?;
    Ok(Decoded {
        seq,
        key: s.key.clone(),
        pixels,
        text,
    })
}

/// Consumer of raw samples: decodes a batch-sized chunk at a time on the pool
/// (order kept), drops and counts bad samples, and emits full batches.
fn assemble(
    cfg: &LoaderConfig,
    start: DataPosition,
    rx: &Receiver<Raw>,
    tx: &Sender<Result<Assembled>>,
    stop: &AtomicBool,
) {
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.workers.max(1))
        .thread_name(|i| format!("realsyn-decode-{i}"))
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Err(e.into()));
            return;
        }
    };
    let mut pending: Vec<Decoded> = Vec::new();
    // Skips not yet handed over, in raw order: (seq, reason, what).
    let mut skipped: Vec<(u64, String, String)> = Vec::new();
    let mut index = start.batch;
    let mut done = false;
    while !done && index < cfg.batches_per_epoch {
        let mut chunk = Vec::with_capacity(cfg.batch_size);
        while chunk.len() < cfg.batch_size {
            match rx.recv() {
                Ok(Raw::Sample(seq, s)) => chunk.push((seq, s)),
                Ok(Raw::Skip(seq, reason, what)) => skipped.push((seq, reason, what)),
                Err(_) => {
                    done = true;
                    break;
                }
            }
        }
        let decoded: Vec<_> = pool.install(|| {
            chunk
                .par_iter()
                .map(|(seq, s)| decode(cfg, start.epoch, *seq, s))
                .collect()
        });
        for (d, (seq, s)) in decoded.into_iter().zip(&chunk) {
            match d {
                Ok(d) => pending.push(d),
                Err(reason) => skipped.push((*seq, reason.to_string(), s.describe())),
            }
        }
        // Shard skips arrived while the chunk was read: keep raw order (stable).
        skipped.sort_by_key(|(seq, _, _)| *seq);
        while pending.len() >= cfg.batch_size && index < cfg.batches_per_epoch {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let rest = pending.split_off(cfg.batch_size);
            let batch = make_batch(
                cfg,
                &pool,
                start.epoch,
                index,
                std::mem::replace(&mut pending, rest),
            );
            index += 1;
            // The skips before this batch's end go with it.
            let cut = skipped.partition_point(|(seq, _, _)| *seq < batch.end.raw_pos);
            let with: Skipped = skipped.drain(..cut).map(|(_, r, w)| (r, w)).collect();
            if tx.send(Ok(Assembled::Batch(batch, with))).is_err() {
                return;
            }
        }
    }
    // The epoch ran out: skips after the last batch are counted at its end.
    if done && !skipped.is_empty() && !stop.load(Ordering::Relaxed) {
        let tail = skipped.into_iter().map(|(_, r, w)| (r, w)).collect();
        let _ = tx.send(Ok(Assembled::Tail(tail)));
    }
}

fn make_batch(
    cfg: &LoaderConfig,
    pool: &rayon::ThreadPool,
    epoch: u64,
    index: u64,
    samples: Vec<Decoded>,
) -> Batch {
    let last = samples.last().map_or(0, |d| d.seq);
    let size = cfg.transform.size() as usize;
    let per_sample = 3 * size * size;
    // ToTensor + Normalize on the decode threads, each sample into its own slot.
    let mut images = vec![0f32; samples.len() * per_sample];
    pool.install(|| {
        images
            .par_chunks_mut(per_sample)
            .zip(samples.par_iter())
            .for_each(|(slot, d)| normalize_chw_into(&d.pixels, slot));
    });
    let mut texts = Vec::with_capacity(samples.len());
    let mut keys = Vec::with_capacity(samples.len());
    for d in samples {
        texts.push(d.text);
        keys.push(d.key);
    }
    let tokens = cfg.tokenize.as_ref().map(|t| t(&texts)).unwrap_or_default();
    Batch {
        epoch,
        index,
        images,
        texts,
        tokens,
        keys,
        end: DataPosition {
            epoch,
            batch: index + 1,
            raw_pos: last + 1,
        },
    }
}
