//! The released RealSyn dataset both ways: a written variant exported as the
//! released parquet (`raw_image_url, text1, text2, text3, syn_text`), and released
//! parquets turned into WebDataset shards by downloading every `raw_image_url`
//! (img2dataset's job: `crate::extract::fetch` for the requests, `crate::write::encode`
//! for the images, the shard layout of the `write` stage).
//!
//! Downloads resume by shard: a shard whose `_stats.json` exists is done and
//! skipped, so a killed download continues where it stopped, and `--shard i/N`
//! style fan-out is `shards` (a range of shard numbers).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::parquet::{ReleasedRow, read_released, write_released};
use super::shard::{DatasetShard, ShardFiles, ShardRow};
use super::{Resize, ShardStats, encode, sample_key};
use crate::extract::fetch::{FetchOptions, Fetcher};
use realsyn_data::wds::{SkipCounter, read_shard};

/// Every sample of a written dataset folder as released rows, in key order.
pub fn export(dataset_dir: &Path, out: &Path) -> Result<usize> {
    let tars = crate::store::tars_in(dataset_dir)?;
    if tars.is_empty() {
        bail!("{} holds no .tar shards", dataset_dir.display());
    }
    let skips = SkipCounter::new();
    let mut rows = Vec::new();
    for t in &tars {
        for s in read_shard(t, &skips) {
            let json: serde_json::Value = s
                .get("json")
                .and_then(|b| serde_json::from_slice(b).ok())
                .with_context(|| {
                    format!("{}: sample {} has no readable .json", t.display(), s.key)
                })?;
            let text = |k: &str| json[k].as_str().map(str::to_string);
            rows.push(ReleasedRow {
                raw_image_url: text("url").unwrap_or_default(),
                text1: text("text1").unwrap_or_default(),
                text2: text("text2"),
                text3: text("text3"),
                syn_text: text("syn_text"),
            });
        }
    }
    if skips.total() > 0 {
        bail!(
            "{}: {} unreadable samples ({:?}); the export would be incomplete",
            dataset_dir.display(),
            skips.total(),
            skips.snapshot()
        );
    }
    write_released(out, &rows)?;
    Ok(rows.len())
}

pub struct DownloadOptions {
    pub samples_per_shard: usize,
    pub resize: Option<Resize>,
    pub jpeg_quality: u8,
    pub fetch: FetchOptions,
    /// Only these shard numbers (fan-out); `None`: all.
    pub shards: Option<std::ops::Range<usize>>,
}

/// `KEY.json` of a downloaded sample: the released texts under img2dataset's fields.
#[derive(Debug, Serialize, Deserialize)]
struct DownloadedJson {
    key: String,
    status: String,
    url: String,
    text1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    text2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    syn_text: Option<String>,
    width: u32,
    height: u32,
    original_width: u32,
    original_height: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DownloadSummary {
    pub rows: usize,
    /// Parquet rows left out, by reason.
    pub bad_rows: BTreeMap<String, usize>,
    pub shards: usize,
    pub shards_skipped_done: usize,
    pub status: BTreeMap<String, usize>,
}

/// Download the released parquets' images into `out` as shards.
pub fn download(
    parquets: &[PathBuf],
    out: &Path,
    opts: &DownloadOptions,
) -> Result<DownloadSummary> {
    let mut summary = DownloadSummary::default();
    let mut rows = Vec::new();
    for p in parquets {
        let mut bad = |_: usize, why: &'static str| {
            *summary.bad_rows.entry(why.to_string()).or_default() += 1;
        };
        rows.extend(read_released(p, &mut bad)?);
    }
    summary.rows = rows.len();
    std::fs::create_dir_all(out)?;
    let per = opts.samples_per_shard.max(1);
    let fetcher = Fetcher::new(opts.fetch.clone())?;
    let n_shards = rows.len().div_ceil(per);
    let bar = realsyn_data::progress::bar(rows.len() as u64, "download");
    for (s, chunk) in rows.chunks(per).enumerate() {
        if opts.shards.as_ref().is_some_and(|r| !r.contains(&s)) {
            continue;
        }
        summary.shards += 1;
        let stats_path = out.join(format!("{s:05}_stats.json"));
        if stats_path.exists() {
            summary.shards_skipped_done += 1;
            bar.inc(chunk.len() as u64);
            continue;
        }
        let urls: Vec<&str> = chunk.iter().map(|r| r.raw_image_url.as_str()).collect();
        let fetched = fetcher.fetch_all(&urls);
        let failed_to_download = fetched.iter().filter(|f| f.is_err()).count();
        let encoded: Vec<_> = fetched
            .into_par_iter()
            .map(|b| b.and_then(|b| encode(&b, opts.resize, opts.jpeg_quality)))
            .collect();
        let mut shard = DatasetShard::create(out, per, s)?;
        for (j, (r, e)) in chunk.iter().zip(encoded).enumerate() {
            let key = sample_key(s, j, per);
            let (status, dims, original) = match &e {
                Ok(e) => ("success", (e.width, e.height), e.original),
                Err(why) => (*why, (0, 0), (0, 0)),
            };
            let json = DownloadedJson {
                key: key.clone(),
                status: status.into(),
                url: r.raw_image_url.clone(),
                text1: r.text1.clone(),
                text2: r.text2.clone(),
                text3: r.text3.clone(),
                syn_text: r.syn_text.clone(),
                width: dims.0,
                height: dims.1,
                original_width: original.0,
                original_height: original.1,
            };
            let files = match e {
                Ok(e) => Some(ShardFiles {
                    jpg: e.jpg,
                    txt: r.text1.clone(),
                    json: serde_json::to_vec(&json)?,
                }),
                Err(_) => None,
            };
            shard.add(
                ShardRow {
                    key,
                    url: json.url,
                    texts: [Some(json.text1), json.text2, json.text3, json.syn_text],
                    status: json.status,
                    size: dims,
                    original,
                    extra: Vec::new(),
                },
                files,
            )?;
        }
        let stats = shard.finish(failed_to_download, "")?;
        for (k, v) in &stats.status_dict {
            *summary.status.entry(k.clone()).or_default() += v;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    write_sizes(out, n_shards)?;
    Ok(summary)
}

/// `sizes.json` once every shard's stats exist.
fn write_sizes(out: &Path, n_shards: usize) -> Result<()> {
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for s in 0..n_shards {
        let p = out.join(format!("{s:05}_stats.json"));
        let Ok(bytes) = std::fs::read(&p) else {
            return Ok(());
        };
        let stats: ShardStats = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a shard's stats", p.display()))?;
        if stats.successes > 0 {
            sizes.insert(format!("{s:05}.tar"), stats.successes as u64);
        }
    }
    realsyn_io::fs::write_atomic(&out.join("sizes.json"), &serde_json::to_vec_pretty(&sizes)?)
}
