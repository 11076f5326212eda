//! Stage `dedup-images`: perceptual and semantic near-duplicates over the whole
//! corpus. Every image row of every extract part is linked to the others whose 64-bit
//! perceptual hash is within `max_hamming` bits (band blocking, see `dedup`) and,
//! with an embedder, to those whose embedding cosine is at least the semantic
//! threshold (LSH, exact verification); components are found with union-find, and one row is kept per component: the most pixels, then
//! the smallest content id, then the first in corpus order (deterministic). The
//! dropped rows are listed with the row they duplicate.
//!
//! Memory: 40 bytes per image row (content id, hash, pixel count) plus a union-find
//! slot; the rows themselves are streamed from the extract parts three times (slim
//! rows; kept rows written; dropped rows written), so 336M images fit in ~16 GB. The
//! semantic pass adds the embeddings of the distinct images (docs/builder.md).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::dedup::link::{CosinePairs, UnionFind, link_hamming, link_semantic};
use crate::embed::ImageEmbedder;
use crate::extract::stage::ImageRow;
use crate::store::funnel::Funnel;
use crate::store::shard::{PartWriter, ShardSpec, complete_parts};
use crate::store::{DEDUP_IMAGES, EXTRACT, JsonlWriter, read_parts, write_funnel};
use realsyn_data::image::IMAGE_EXTENSIONS;
use realsyn_io::{Embeddings, encode_in_batches};

pub use crate::dedup::link::DEFAULT_MAX_HAMMING;

#[derive(Serialize)]
struct Dropped<'a> {
    id: &'a str,
    doc_id: &'a str,
    position: usize,
    duplicate_of: &'a str,
    duplicate_doc: &'a str,
}

/// The semantic pass: an embedder and the cosine at which two images are duplicates.
pub struct Semantic<'a> {
    pub embedder: &'a mut dyn ImageEmbedder,
    pub threshold: f32,
    /// How the pairs above the threshold are found.
    pub pairs: CosinePairs<'a>,
}

pub const DEFAULT_SEMANTIC_THRESHOLD: f32 = 0.95;

/// What dedup needs of one image row: 40 bytes, against a few hundred for the row.
/// The rows themselves are re-streamed from the extract parts to be written.
struct Slim {
    /// The content id (SHA-256 prefix, 32 hex digits) as a number.
    id: u128,
    phash: u64,
    pixels: u64,
}

fn parse_id(id: &str) -> Result<u128> {
    u128::from_str_radix(id, 16).with_context(|| format!("image id {id:?} is not 32 hex digits"))
}

pub fn run(store: &Path, max_hamming: u32, semantic: Option<Semantic>) -> Result<Option<Funnel>> {
    let parts = complete_parts(&store.join(EXTRACT))?;
    let Some(part) = PartWriter::begin(&store.join(DEDUP_IMAGES), ShardSpec::default())? else {
        return Ok(None);
    };
    // Pass 1: the slim rows.
    let mut slim: Vec<Slim> = Vec::new();
    read_parts(&parts, "images.jsonl", |_, row: ImageRow| {
        slim.push(Slim {
            id: parse_id(&row.id)?,
            phash: u64::from_str_radix(&row.phash, 16).context("phash")?,
            pixels: row.width as u64 * row.height as u64,
        });
        Ok(())
    })?;
    let hashes: Vec<u64> = slim.iter().map(|r| r.phash).collect();
    let mut uf = UnionFind::new(hashes.len());
    link_hamming(&hashes, max_hamming, &mut uf);
    drop(hashes);
    let mut perceptual = uf.clone();
    // Embeddings of each distinct image (rows with identical bytes share one).
    let mut ids: Vec<u128> = slim.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut embedding: Option<Embeddings> = None;
    if let Some(Semantic {
        embedder,
        threshold,
        pairs,
    }) = semantic
    {
        let emb = embed_store(&parts, &ids, embedder)?;
        let mut by_id = UnionFind::new(ids.len());
        link_semantic(emb.as_slice(), emb.width(), threshold, pairs, &mut by_id)?;
        // Rows whose images are linked join one component.
        let mut first_row: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for (i, row) in slim.iter().enumerate() {
            let k = ids.binary_search(&row.id).unwrap() as u32;
            let root = by_id.find(k);
            let r = *first_row.entry(root).or_insert(i as u32);
            uf.union(r, i as u32);
        }
        embedding = Some(emb);
    }
    let comp = uf.components();
    // The kept row of each component: the most pixels, then the smallest id, then
    // the first in corpus order.
    let mut best: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (i, &c) in comp.iter().enumerate() {
        let e = best.entry(c).or_insert(i);
        let (a, b) = (&slim[i], &slim[*e]);
        if a.pixels > b.pixels || (a.pixels == b.pixels && a.id < b.id) {
            *e = i;
        }
    }
    let keep_of = |i: usize| best[&comp[i]];
    // Pass 2: write the kept rows; note the document of each kept row that others
    // duplicate (the dropped list names it).
    let mut has_dupes = vec![false; slim.len()];
    for i in 0..slim.len() {
        if keep_of(i) != i {
            has_dupes[keep_of(i)] = true;
        }
    }
    let mut kept_doc: std::collections::HashMap<usize, String> = std::collections::HashMap::new();
    let mut kept_ids: Vec<u128> = Vec::new();
    let mut images = JsonlWriter::create(&part.path("images.jsonl"))?;
    read_parts(&parts, "images.jsonl", |i, row: ImageRow| {
        if keep_of(i) == i {
            if has_dupes[i] {
                kept_doc.insert(i, row.doc_id.clone());
            }
            kept_ids.push(slim[i].id);
            images.write(&row)?;
        }
        Ok(())
    })?;
    images.finish()?;
    // Pass 3: the dropped rows, with the reason and the row they duplicate.
    let mut funnel = Funnel::default();
    let mut dropped = JsonlWriter::create(&part.path("dropped.jsonl"))?;
    read_parts(&parts, "images.jsonl", |i, row: ImageRow| {
        let keep = keep_of(i);
        let step = funnel.step("image dedup", "images");
        if keep == i {
            step.pass();
            return Ok(());
        }
        let reason = if slim[keep].id == slim[i].id {
            "identical bytes"
        } else if perceptual.find(keep as u32) == perceptual.find(i as u32) {
            "perceptual near-duplicate"
        } else {
            "semantic near-duplicate"
        };
        step.drop(reason);
        dropped.write(&Dropped {
            id: &row.id,
            doc_id: &row.doc_id,
            position: row.position,
            duplicate_of: &format!("{:032x}", slim[keep].id),
            duplicate_doc: &kept_doc[&keep],
        })
    })?;
    dropped.finish()?;
    funnel.step("image dedup", "images");
    if let Some(emb) = &embedding {
        // Embeddings of the kept rows, aligned with images.jsonl (the retrieval and
        // balancing stages reuse them).
        let mut out = Embeddings::empty(emb.width());
        for id in &kept_ids {
            out.push_row(emb.row(ids.binary_search(id).unwrap()))?;
        }
        out.write_npy(&part.path("image_embeddings.npy"))?;
    }
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

/// Embed every distinct image (`ids`, sorted) from the extract parts' tar shards, in
/// batches of 64; rows of the result follow `ids`.
fn embed_store(
    parts: &[std::path::PathBuf],
    ids: &[u128],
    embedder: &mut dyn ImageEmbedder,
) -> Result<Embeddings> {
    use realsyn_data::wds::{SkipCounter, read_shard};
    let mut tars = Vec::new();
    for part in parts {
        tars.extend(crate::store::tars_in(&part.join("images"))?);
    }
    let skips = SkipCounter::new();
    // The first copy of each indexed image, in store order; `order` records the index
    // into `ids` of each image embedded.
    let mut seen = vec![false; ids.len()];
    let mut order = Vec::with_capacity(ids.len());
    let images = tars
        .iter()
        .flat_map(|tar| read_shard(tar, &skips))
        .filter_map(|sample| {
            let k = ids.binary_search(&parse_id(&sample.key).ok()?).ok()?;
            let bytes = sample.first_of(IMAGE_EXTENSIONS)?;
            (!seen[k]).then(|| {
                seen[k] = true;
                crate::extract::images::decode(bytes)
                    .map(|img| (k, img))
                    .map_err(|r| anyhow::anyhow!("{}: {r}", sample.key))
            })
        })
        .map(|decoded| {
            decoded.map(|(k, img)| {
                order.push(k);
                img
            })
        });
    let bar = realsyn_data::progress::bar(ids.len() as u64, "embed");
    let emb = encode_in_batches(
        images,
        64,
        |batch: &[image::DynamicImage]| embedder.embed(batch),
        |n| bar.inc(n as u64),
    )?;
    bar.finish_and_clear();
    // Rows in `ids` order.
    let mut slot: Vec<Option<usize>> = vec![None; ids.len()];
    for (row, &k) in order.iter().enumerate() {
        slot[k] = Some(row);
    }
    let mut out = Embeddings::empty(emb.width());
    for (k, s) in slot.iter().enumerate() {
        let s = s.ok_or_else(|| {
            anyhow::anyhow!(
                "image {:032x} is indexed but not in the store's tar shards",
                ids[k]
            )
        })?;
        out.push_row(emb.row(s))?;
    }
    Ok(out)
}
