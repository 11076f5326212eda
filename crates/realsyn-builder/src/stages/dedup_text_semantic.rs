//! Stage `dedup-text-semantic`: semantic sentence dedup (paper 3.1, step 4, after the
//! near-exact pass). Every sentence kept by `dedup-text` is embedded (any
//! `TextEmbedder`; the CLI provides the CLIP text tower, the encoder the paper also
//! clusters sentences with), linked to the sentences whose cosine is at least the
//! threshold (LSH + exact verification, `dedup::link_cosine`), and one sentence is
//! kept per union-find component: the first in corpus order (dedup-text part, then
//! line), so the result is deterministic.
//!
//! Output, one part: the kept `sentences.jsonl`, their embeddings
//! (`text_embeddings.npy`, row i = sentence i; the clustering stage reuses them), and
//! `dropped.jsonl` naming the sentence each dropped one duplicates.
//!
//! Memory: every row and its embedding (2 KB at 512-d), so about 10^7 sentences per
//! machine; docs/builder.md says how to go further.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;

use super::extract::SentenceRow;
use super::{DEDUP_TEXT, DEDUP_TEXT_SEMANTIC, read_jsonl, write_funnel, write_jsonl};
use crate::dedup::{LshParams, UnionFind, link_cosine};
use crate::embed::TextEmbedder;
use crate::funnel::Funnel;
use crate::shard::{PartWriter, ShardSpec, complete_parts};

pub const DEFAULT_TEXT_SEMANTIC_THRESHOLD: f32 = 0.95;
const EMBED_BATCH: usize = 256;

/// The embedder and the cosine at which two sentences are duplicates.
pub struct TextSemantic<'a> {
    pub embedder: &'a mut dyn TextEmbedder,
    pub threshold: f32,
}

#[derive(Serialize)]
struct Dropped<'a> {
    text: &'a str,
    doc_id: &'a str,
    duplicate_of: &'a str,
    duplicate_doc: &'a str,
}

pub fn run(store: &Path, semantic: TextSemantic) -> Result<Option<Funnel>> {
    let parts = complete_parts(&store.join(DEDUP_TEXT))?;
    if parts.is_empty() {
        bail!(
            "{} has no finished dedup-text parts: run dedup-text first",
            store.display()
        );
    }
    let Some(part) = PartWriter::begin(&store.join(DEDUP_TEXT_SEMANTIC), ShardSpec::default())?
    else {
        return Ok(None);
    };
    let mut rows: Vec<SentenceRow> = Vec::new();
    for p in &parts {
        read_jsonl(&p.join("sentences.jsonl"), |row: SentenceRow| {
            rows.push(row);
            Ok(())
        })?;
    }
    let (emb, dim) = embed_all(&rows, semantic.embedder)?;
    let mut uf = UnionFind::new(rows.len());
    link_cosine(
        &emb,
        dim,
        semantic.threshold,
        &LshParams::default(),
        &mut uf,
    );
    let comp = uf.components();
    // The first row of each component (rows are in corpus order).
    let mut first: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (i, &c) in comp.iter().enumerate() {
        first.entry(c).or_insert(i);
    }
    let mut funnel = Funnel::default();
    let name = "semantic dedup";
    let (mut kept, mut kept_emb, mut dropped) = (Vec::new(), Vec::new(), Vec::new());
    for (i, row) in rows.iter().enumerate() {
        let keep = first[&comp[i]];
        if funnel
            .step(name, "sentences")
            .record((keep != i).then_some("semantic near-duplicate"))
        {
            kept.push(row);
            kept_emb.extend_from_slice(&emb[i * dim..(i + 1) * dim]);
        } else {
            dropped.push(Dropped {
                text: &row.text,
                doc_id: &row.doc_id,
                duplicate_of: &rows[keep].text,
                duplicate_doc: &rows[keep].doc_id,
            });
        }
    }
    funnel.step(name, "sentences");
    realsyn_data::npy::write_npy(
        &part.path("text_embeddings.npy"),
        &kept_emb,
        &[kept.len(), dim],
    )?;
    write_jsonl(&part.path("sentences.jsonl"), kept)?;
    write_jsonl(&part.path("dropped.jsonl"), &dropped)?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

fn embed_all(rows: &[SentenceRow], embedder: &mut dyn TextEmbedder) -> Result<(Vec<f32>, usize)> {
    let bar = realsyn_data::progress::bar(rows.len() as u64, "embed text");
    let (mut emb, mut dim) = (Vec::new(), 0);
    for chunk in rows.chunks(EMBED_BATCH) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        let (e, d) = embedder.embed(&texts)?;
        if e.len() != d * chunk.len() {
            bail!(
                "{} returned {} values for {} texts of dim {d}",
                embedder.name(),
                e.len(),
                chunk.len()
            );
        }
        dim = d;
        emb.extend(e);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok((emb, dim.max(1)))
}
