//! Stage `dedup-images`: perceptual and semantic near-duplicates over the whole
//! corpus. Every image row of every extract part is linked to the others whose 64-bit
//! perceptual hash is within `max_hamming` bits (band blocking, see `dedup`) and,
//! with an embedder, to those whose embedding cosine is at least the semantic
//! threshold (LSH, exact verification); components are found with union-find, and one row is kept per component: the most pixels, then
//! the smallest content id, then the first in corpus order (deterministic). The
//! dropped rows are listed with the row they duplicate.
//!
//! Memory: every image row (a few hundred bytes), its 8-byte hash and a union-find
//! slot, so about 10^7 images per machine; docs/builder.md says how to go further.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::extract::ImageRow;
use super::{DEDUP_IMAGES, EXTRACT, read_jsonl, write_funnel, write_jsonl};
use crate::dedup::{LshParams, UnionFind, link_cosine, link_hamming};
use crate::embed::ImageEmbedder;
use crate::funnel::Funnel;
use crate::shard::{PartWriter, ShardSpec, complete_parts};

pub const DEFAULT_MAX_HAMMING: u32 = 4;

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
}

pub const DEFAULT_SEMANTIC_THRESHOLD: f32 = 0.95;

pub fn run(store: &Path, max_hamming: u32, semantic: Option<Semantic>) -> Result<Option<Funnel>> {
    let parts = complete_parts(&store.join(EXTRACT))?;
    let Some(part) = PartWriter::begin(&store.join(DEDUP_IMAGES), ShardSpec::default())? else {
        return Ok(None);
    };
    // Every row once; hashes and the keep order are derived from them.
    let mut rows: Vec<ImageRow> = Vec::new();
    for p in &parts {
        read_jsonl(&p.join("images.jsonl"), |row: ImageRow| {
            rows.push(row);
            Ok(())
        })?;
    }
    let hashes = rows
        .iter()
        .map(|r| u64::from_str_radix(&r.phash, 16).context("phash"))
        .collect::<Result<Vec<u64>>>()?;
    let mut uf = UnionFind::new(hashes.len());
    link_hamming(&hashes, max_hamming, &mut uf);
    let mut perceptual = uf.clone();
    // Embeddings of each distinct image (rows with identical bytes share one).
    let mut ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut embedding: Option<(Vec<f32>, usize)> = None;
    if let Some(Semantic {
        embedder,
        threshold,
    }) = semantic
    {
        let (emb, dim) = embed_store(&parts, &ids, embedder)?;
        let mut by_id = UnionFind::new(ids.len());
        link_cosine(&emb, dim, threshold, &LshParams::default(), &mut by_id);
        // Rows whose images are linked join one component.
        let mut first_row: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            let k = ids.binary_search(&row.id).unwrap() as u32;
            let root = by_id.find(k);
            let r = *first_row.entry(root).or_insert(i as u32);
            uf.union(r, i as u32);
        }
        embedding = Some((emb, dim));
    }
    let comp = uf.components();
    // The kept row of each component.
    let mut best: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (i, &c) in comp.iter().enumerate() {
        let e = best.entry(c).or_insert(i);
        let pixels = |r: &ImageRow| r.width as u64 * r.height as u64;
        let (a, b) = (&rows[i], &rows[*e]);
        if pixels(a) > pixels(b) || (pixels(a) == pixels(b) && a.id < b.id) {
            *e = i;
        }
    }
    let mut funnel = Funnel::default();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let keep = best[&comp[i]];
        let step = funnel.step("image dedup", "images");
        if keep == i {
            step.pass();
            kept.push(row);
        } else {
            let reason = if rows[keep].id == row.id {
                "identical bytes"
            } else if perceptual.find(keep as u32) == perceptual.find(i as u32) {
                "perceptual near-duplicate"
            } else {
                "semantic near-duplicate"
            };
            step.drop(reason);
            dropped.push(Dropped {
                id: &row.id,
                doc_id: &row.doc_id,
                position: row.position,
                duplicate_of: &rows[keep].id,
                duplicate_doc: &rows[keep].doc_id,
            });
        }
    }
    funnel.step("image dedup", "images");
    if let Some((emb, dim)) = &embedding {
        // Embeddings of the kept rows, aligned with images.jsonl (the retrieval and
        // balancing stages reuse them).
        let mut out = Vec::with_capacity(kept.len() * dim);
        for row in &kept {
            let k = ids.binary_search(&row.id).unwrap();
            out.extend_from_slice(&emb[k * dim..(k + 1) * dim]);
        }
        realsyn_data::npy::write_npy(
            &part.path("image_embeddings.npy"),
            &out,
            &[kept.len(), *dim],
        )?;
    }
    write_jsonl(&part.path("images.jsonl"), kept)?;
    write_jsonl(&part.path("dropped.jsonl"), &dropped)?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

/// Embed every distinct image (`ids`, sorted) from the extract parts' tar shards, in
/// batches of 64; rows of the result follow `ids`.
fn embed_store(
    parts: &[std::path::PathBuf],
    ids: &[String],
    embedder: &mut dyn ImageEmbedder,
) -> Result<(Vec<f32>, usize)> {
    use realsyn_data::wds::{SkipCounter, read_shard};
    let bar = realsyn_data::progress::bar(ids.len() as u64, "embed");
    let mut slot: Vec<Option<usize>> = vec![None; ids.len()];
    let (mut emb, mut dim) = (Vec::new(), 0);
    // Indices into `ids` and their decoded images, embedded 64 at a time.
    let (mut keys, mut batch): (Vec<usize>, Vec<image::DynamicImage>) = (Vec::new(), Vec::new());
    let mut flush = |keys: &mut Vec<usize>,
                     batch: &mut Vec<image::DynamicImage>,
                     emb: &mut Vec<f32>,
                     dim: &mut usize,
                     slot: &mut Vec<Option<usize>>|
     -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (rows, d) = embedder.embed(batch)?;
        *dim = d;
        for (j, &k) in keys.iter().enumerate() {
            slot[k] = Some(emb.len() / d);
            emb.extend_from_slice(&rows[j * d..(j + 1) * d]);
        }
        bar.inc(batch.len() as u64);
        keys.clear();
        batch.clear();
        Ok(())
    };
    let skips = SkipCounter::new();
    for part in parts {
        let mut tars: Vec<_> = std::fs::read_dir(part.join("images"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .collect();
        tars.sort();
        for tar in tars {
            for sample in read_shard(&tar, &skips) {
                let Ok(k) = ids.binary_search(&sample.key) else {
                    continue;
                };
                if slot[k].is_some() || keys.contains(&k) {
                    continue;
                }
                let Some(bytes) = sample.first_of(&["jpg", "png", "webp", "gif", "bmp", "tiff"])
                else {
                    continue;
                };
                let img = crate::images::decode(bytes)
                    .map_err(|r| anyhow::anyhow!("{}: {r}", sample.key))?;
                keys.push(k);
                batch.push(img);
                if batch.len() >= 64 {
                    flush(&mut keys, &mut batch, &mut emb, &mut dim, &mut slot)?;
                }
            }
        }
    }
    flush(&mut keys, &mut batch, &mut emb, &mut dim, &mut slot)?;
    bar.finish_and_clear();
    let mut out = vec![0f32; ids.len() * dim];
    for (k, s) in slot.iter().enumerate() {
        let s = s.ok_or_else(|| {
            anyhow::anyhow!(
                "image {} is indexed but not in the store's tar shards",
                ids[k]
            )
        })?;
        out[k * dim..(k + 1) * dim].copy_from_slice(&emb[s * dim..(s + 1) * dim]);
    }
    Ok((out, dim))
}
