//! Stage `write`: the dataset as WebDataset shards, one folder per variant under
//! `STORE/dataset/` (`all`, `balanced-CAP`, `random-CAP`), in img2dataset's layout
//! (`crate::write`): `{00000..N}.tar` with `KEY.jpg`, `KEY.txt` (text1) and
//! `KEY.json` (`crate::write::sample::SampleJson`), `NNNNN.parquet` and
//! `NNNNN_stats.json` beside every tar, `sizes.json` once every part is done.
//!
//! Sample j of a variant (in the order of the pairing stage's rows) goes to shard
//! j / samples_per_shard under key `sample_key(shard, j mod samples_per_shard)`,
//! so keys and shard contents do not depend on how the work is split: part i of N
//! (`--shard i/N`) writes the shards s with s mod N = i. Each tar is written under
//! a temporary name and renamed when whole; a killed part is rewritten on rerun,
//! byte for byte the same. An image that cannot be read or encoded is left out of
//! the tar and listed in the shard's parquet with its status, as img2dataset does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::balance::stage::{self as balance_stage, BalancedRow, SamplesSource};
use crate::extract::stage::ImageRow;
use crate::generate::stage::GeneratedRow;
use crate::retrieve::stage::for_each_image_bytes;
use crate::store::funnel::Funnel;
use crate::store::manifest::{DatasetSettings, Manifest};
use crate::store::shard::{PartWriter, ShardSpec, complete_parts};
use crate::store::{WRITE, write_funnel};
use crate::write::sample::SampleJson;
use crate::write::shard::{DatasetShard, ShardFiles, ShardRow};
use crate::write::{ShardStats, Variant, encode, sample_key};

/// The folder of the written datasets.
pub const DATASET_DIR: &str = "dataset";

/// What one part wrote: per variant, shard file -> samples.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PartRecord {
    shards: BTreeMap<String, BTreeMap<String, u64>>,
}

/// A variant's folder in the store.
pub fn variant_dir(store: &Path, v: Variant) -> PathBuf {
    store.join(DATASET_DIR).join(v.name())
}

/// The rows of each variant: (source part, line) in the source's order.
fn selections(
    variants: &[Variant],
    source: &SamplesSource,
    balanced: Option<&[BalancedRow]>,
) -> Result<Vec<Vec<(usize, usize)>>> {
    variants
        .iter()
        .map(|v| {
            Ok(match (v, balanced) {
                (Variant::All, _) => {
                    let mut all = Vec::new();
                    for r in source.all() {
                        let (p, line, _) = r?;
                        all.push((p, line));
                    }
                    all
                }
                (Variant::Balanced { .. } | Variant::Random { .. }, None) => {
                    bail!("variant {v} needs the balance stage (--balance-caps)")
                }
                (Variant::Balanced { cap }, Some(rows)) => rows
                    .iter()
                    .filter(|r| r.in_balanced(*cap))
                    .map(|r| (r.part, r.line))
                    .collect(),
                (Variant::Random { cap }, Some(rows)) => {
                    let size = rows.iter().filter(|r| r.in_balanced(*cap)).count();
                    rows.iter()
                        .filter(|r| r.in_random(size))
                        .map(|r| (r.part, r.line))
                        .collect()
                }
            })
        })
        .collect()
}

pub fn run(
    store: &Path,
    m: &Manifest,
    settings: &DatasetSettings,
    shard: ShardSpec,
) -> Result<Option<Funnel>> {
    let source = SamplesSource::open(store, m)?;
    let balanced = match &m.balance {
        Some(_) => Some(balance_stage::open(store)?.0),
        None => None,
    };
    let Some(part) = PartWriter::begin(&store.join(WRITE), shard)? else {
        return Ok(None);
    };
    let per = settings.samples_per_shard.max(1);
    let selected = selections(&settings.variants, &source, balanced.as_deref())?;
    let by_source: HashMap<(usize, usize), &BalancedRow> = balanced
        .iter()
        .flatten()
        .map(|r| ((r.part, r.line), r))
        .collect();
    // The rows this part writes, read once.
    let mut wanted: BTreeSet<(usize, usize)> = BTreeSet::new();
    for sel in &selected {
        for (s, chunk) in sel.chunks(per).enumerate() {
            if shard.owns(s) {
                wanted.extend(chunk.iter().copied());
            }
        }
    }
    let mut rows: HashMap<(usize, usize), GeneratedRow> = HashMap::new();
    for r in source.all() {
        let (p, line, g) = r?;
        if wanted.contains(&(p, line)) {
            rows.insert((p, line), g);
        }
    }
    let mut funnel = Funnel::default();
    let mut record = PartRecord::default();
    for (v, sel) in settings.variants.iter().zip(&selected) {
        let dir = variant_dir(store, *v);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let step_name = format!("dataset writer: {v}");
        funnel.step(&step_name, "images");
        let written = record.shards.entry(v.name()).or_default();
        for (s, chunk) in sel.chunks(per).enumerate() {
            if !shard.owns(s) {
                continue;
            }
            let samples: Vec<(&GeneratedRow, Option<&BalancedRow>)> = chunk
                .iter()
                .map(|k| (&rows[k], by_source.get(k).copied()))
                .collect();
            let stats = write_shard(store, &dir, s, &samples, settings)?;
            let step = funnel.step(&step_name, "images");
            for (status, n) in &stats.status_dict {
                for _ in 0..*n {
                    step.record((status != "success").then_some(status.as_str()));
                }
            }
            if stats.successes > 0 {
                written.insert(format!("{s:05}.tar"), stats.successes as u64);
            }
        }
    }
    std::fs::write(
        part.path("shards.json"),
        serde_json::to_vec_pretty(&record)?,
    )?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    write_sizes(store, shard.count)?;
    Ok(Some(funnel))
}

/// Why a sample's image has no bytes: the store's tar shards lack it.
const NOT_IN_TAR: &str = "image not in its tar shard";

fn write_shard(
    store: &Path,
    dir: &Path,
    s: usize,
    samples: &[(&GeneratedRow, Option<&BalancedRow>)],
    settings: &DatasetSettings,
) -> Result<ShardStats> {
    let per = settings.samples_per_shard.max(1);
    // The stored bytes of every image of the shard (one shard in memory at a time).
    let images: Vec<(usize, ImageRow)> = samples
        .iter()
        .enumerate()
        .map(|(j, (g, _))| (j, g.pair.image.clone()))
        .collect();
    let mut bytes: Vec<Result<Vec<u8>, &'static str>> = vec![Err(NOT_IN_TAR); samples.len()];
    for_each_image_bytes(store, &images, |j, b| {
        bytes[j] = b.map(<[u8]>::to_vec);
        Ok(())
    })?;
    let encoded: Vec<_> = bytes
        .into_par_iter()
        .map(|b| b.and_then(|b| encode(&b, settings.resize, settings.jpeg_quality)))
        .collect();
    let mut shard = DatasetShard::create(dir, per, s)?;
    let mut missing = 0;
    for (j, ((g, b), e)) in samples.iter().zip(encoded).enumerate() {
        let key = sample_key(s, j, per);
        let dims = e.as_ref().map_or((0, 0), |e| (e.width, e.height));
        let mut json = SampleJson::new(&key, g, *b, dims);
        let files = match e {
            Ok(e) => Some(ShardFiles {
                jpg: e.jpg,
                txt: json.text1.clone().unwrap_or_default(),
                json: serde_json::to_vec(&json)?,
            }),
            Err(r) => {
                json.status = r.to_string();
                missing += usize::from(r == NOT_IN_TAR);
                None
            }
        };
        shard.add(
            ShardRow {
                key,
                url: json.url,
                texts: [json.text1, json.text2, json.text3, json.syn_text],
                status: json.status,
                size: (json.width, json.height),
                original: (json.original_width, json.original_height),
                extra: vec![("image_id", json.image_id), ("doc_id", json.doc_id)],
            },
            files,
        )?;
    }
    let variant = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // An image missing from the store's tar shards never arrived: img2dataset's
    // failed_to_download; the rest failed to decode or encode.
    shard.finish(missing, &variant)
}

/// Once every part of the stage is done: each variant's `sizes.json` from the
/// parts' records (written again by whichever part finishes last).
fn write_sizes(store: &Path, parts: usize) -> Result<()> {
    let dir = store.join(WRITE);
    let finished = (0..parts)
        .filter(|&i| {
            let part = ShardSpec {
                index: i,
                count: parts,
            };
            dir.join(part.dir_name()).join("funnel.json").exists()
        })
        .count();
    if finished < parts {
        return Ok(());
    }
    let done = complete_parts(&dir)?;
    let mut sizes: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for p in &done {
        let r: PartRecord = serde_json::from_slice(&std::fs::read(p.join("shards.json"))?)
            .with_context(|| format!("{}/shards.json", p.display()))?;
        for (v, shards) in r.shards {
            sizes.entry(v).or_default().extend(shards);
        }
    }
    for (v, shards) in sizes {
        let dir = store.join(DATASET_DIR).join(&v);
        realsyn_io::fs::write_atomic(
            &dir.join("sizes.json"),
            &serde_json::to_vec_pretty(&shards)?,
        )?;
    }
    Ok(())
}

/// The brace pattern of a written variant's shards (`DIR/{00000..00012}.tar`), for
/// `realsyn train` and open_clip's `--train-data`.
pub fn shard_pattern(store: &Path, v: Variant) -> Result<String> {
    dir_pattern(&variant_dir(store, v))
}

/// The brace pattern of the `.tar` shards in `dir` (the one file when there is one).
pub fn dir_pattern(dir: &Path) -> Result<String> {
    let tars = crate::store::tars_in(dir)?;
    let (Some(first), Some(last)) = (tars.first(), tars.last()) else {
        bail!("{} holds no shards", dir.display());
    };
    let stem = |p: &PathBuf| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Ok(if tars.len() == 1 {
        first.display().to_string()
    } else {
        format!("{}/{{{}..{}}}.tar", dir.display(), stem(first), stem(last))
    })
}
