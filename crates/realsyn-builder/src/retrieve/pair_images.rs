//! `realsyn build pair-images`: images with no documents (a folder, or WebDataset
//! tar shards, e.g. ImageNet) paired with the sentences of an existing store, as in
//! the paper's "Extension to Pure Image" (§4, Table 12). The store's pairing
//! encoder embeds the images; `retrieve::pair` gives each its 3 nearest sentences.
//!
//! Not a stage of the store's list: it reads a finished store and writes elsewhere
//! (`OUT/part-i-of-N/pairs.jsonl` + `funnel.json`, atomic, resumable), so one
//! sentence store can serve any number of image collections.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::cluster::search::VectorSearch;
use crate::embed::ImageEmbedder;
use crate::retrieve::stage::{BatchedEmbedding, RetrievedText, open_clusters, pair};
use crate::store::funnel::Funnel;
use crate::store::manifest::Manifest;
use crate::store::shard::{PartWriter, ShardSpec};
use crate::store::{JsonlWriter, write_funnel};

/// One image of the collection with its texts.
#[derive(Serialize)]
struct PureRow<'a> {
    /// The file's path under its input folder, or `SHARD.tar/KEY`.
    key: &'a str,
    width: u32,
    height: u32,
    clusters: Vec<(u32, f32)>,
    texts: Vec<RetrievedText>,
}

/// An item of the collection: an image file, or a tar shard of samples.
enum Source {
    File { path: PathBuf, key: String },
    Tar(PathBuf),
}

fn sources(inputs: &[PathBuf]) -> Result<Vec<Source>> {
    let mut exts: Vec<&str> = realsyn_data::image::IMAGE_EXTENSIONS.to_vec();
    exts.push("tar");
    let mut out = Vec::new();
    for input in inputs {
        let files = if input.is_dir() {
            crate::extract::ingest::find_files(input, &exts)?
        } else if input.is_file() {
            vec![input.clone()]
        } else {
            bail!("{}: no such file or folder", input.display());
        };
        for path in files {
            if path.extension().is_some_and(|e| e == "tar") {
                out.push(Source::Tar(path));
            } else {
                let key = path
                    .strip_prefix(input)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                let key = if key.is_empty() {
                    path.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                } else {
                    key
                };
                out.push(Source::File { path, key });
            }
        }
    }
    if out.is_empty() {
        bail!("no images or tar shards under {inputs:?}");
    }
    Ok(out)
}

pub fn run(
    store: &Path,
    inputs: &[PathBuf],
    out: &Path,
    shard: ShardSpec,
    embedder: &mut dyn ImageEmbedder,
    search: &dyn VectorSearch,
) -> Result<Option<Funnel>> {
    let m = Manifest::read(store)?;
    let settings = m.pairing.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "{} was built without --pair-encoder: it has no text clusters to pair with",
            store.display()
        )
    })?;
    let clusters = open_clusters(store, settings)?;
    let sources = sources(inputs)?;
    let Some(part) = PartWriter::begin(out, shard)? else {
        return Ok(None);
    };
    // This part's images, decoded and embedded a batch at a time.
    let mut keys: Vec<(String, u32, u32)> = Vec::new();
    let mut embedded = BatchedEmbedding::new(embedder, 0, "not embedded", 0);
    let mut index = 0usize;
    let skips = realsyn_data::wds::SkipCounter::new();
    let mut take = |key: String, bytes: Option<Vec<u8>>| -> Result<()> {
        let mine = shard.owns(index);
        index += 1;
        if !mine {
            return Ok(());
        }
        let decoded = bytes
            .ok_or("image unreadable")
            .and_then(|b| crate::extract::images::decode(&b));
        let (w, h) = decoded.as_ref().map_or((0, 0), |i| (i.width(), i.height()));
        keys.push((key, w, h));
        let j = embedded.add_slot(Err("not embedded"));
        embedded.push(j, decoded)
    };
    for source in &sources {
        match source {
            Source::File { path, key } => take(key.clone(), std::fs::read(path).ok())?,
            Source::Tar(path) => {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                for sample in realsyn_data::wds::read_shard(path, &skips) {
                    let bytes = sample
                        .first_of(realsyn_data::image::IMAGE_EXTENSIONS)
                        .map(|b| b.to_vec());
                    take(format!("{name}/{}", sample.key), bytes)?;
                }
            }
        }
    }
    let paired = pair(&clusters, settings, embedded.finish()?, search)?;
    let mut funnel = Funnel::default();
    let mut w = JsonlWriter::create(&part.path("pairs.jsonl"))?;
    for ((key, width, height), p) in keys.iter().zip(paired) {
        let step = funnel.step("pure-image retrieval", "images");
        match p {
            Err(r) => step.drop(r),
            Ok((clusters, texts)) => {
                step.pass();
                w.write(&PureRow {
                    key,
                    width: *width,
                    height: *height,
                    clusters,
                    texts,
                })?;
            }
        }
    }
    w.finish()?;
    // Samples a tar shard could not yield (truncated, unreadable) are not items.
    for (reason, n) in skips.snapshot() {
        eprintln!("pair-images: {n} tar samples skipped: {reason}");
    }
    funnel.step("pure-image retrieval", "images");
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}
