//! Stage `dedup-images`: perceptual near-duplicates over the whole corpus. Every
//! image row of every extract part is linked to the others whose 64-bit perceptual
//! hash is within `max_hamming` bits (band blocking, see `dedup`), components are
//! found with union-find, and one row is kept per component: the most pixels, then
//! the smallest content id, then the first in corpus order (deterministic). The
//! dropped rows are listed with the row they duplicate.
//!
//! Memory is 8 bytes of hash + a union-find slot per image (198M images: ~2.4 GB on
//! one machine); rows are re-streamed for the output instead of being held.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::extract::ImageRow;
use super::{DEDUP_IMAGES, EXTRACT, read_jsonl, write_funnel, write_jsonl};
use crate::dedup::{UnionFind, link_hamming};
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

pub fn run(store: &Path, max_hamming: u32) -> Result<Option<Funnel>> {
    let parts = complete_parts(&store.join(EXTRACT))?;
    let Some(part) = PartWriter::begin(&store.join(DEDUP_IMAGES), ShardSpec::default())? else {
        return Ok(None);
    };
    // Pass 1: hashes and the keep-order key of every row.
    let mut hashes = Vec::new();
    let mut rank: Vec<(u64, String)> = Vec::new();
    for p in &parts {
        read_jsonl(&p.join("images.jsonl"), |row: ImageRow| {
            hashes.push(u64::from_str_radix(&row.phash, 16).context("phash")?);
            rank.push((row.width as u64 * row.height as u64, row.id));
            Ok(())
        })?;
    }
    let mut uf = UnionFind::new(hashes.len());
    link_hamming(&hashes, max_hamming, &mut uf);
    let comp = uf.components();
    // The kept row of each component.
    let mut best: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (i, &c) in comp.iter().enumerate() {
        let e = best.entry(c).or_insert(i);
        let (a, b) = (&rank[i], &rank[*e]);
        if a.0 > b.0 || (a.0 == b.0 && a.1 < b.1) {
            *e = i;
        }
    }
    // Pass 2: stream the rows again, writing kept and dropped in corpus order.
    let mut rows = Vec::with_capacity(hashes.len());
    for p in &parts {
        read_jsonl(&p.join("images.jsonl"), |row: ImageRow| {
            rows.push(row);
            Ok(())
        })?;
    }
    let mut funnel = Funnel::default();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let keep = best[&comp[i]];
        let step = funnel.step("perceptual dedup", "images");
        if keep == i {
            step.pass();
            kept.push(row);
        } else {
            let reason = if rows[keep].id == row.id {
                "identical bytes"
            } else {
                "perceptual near-duplicate"
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
    funnel.step("perceptual dedup", "images");
    write_jsonl(&part.path("images.jsonl"), kept)?;
    write_jsonl(&part.path("dropped.jsonl"), &dropped)?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}
