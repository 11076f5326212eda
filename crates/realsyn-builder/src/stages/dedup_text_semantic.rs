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
//! Memory: the embeddings (2 KB per sentence at 512-d) and a union-find slot; the
//! rows are streamed from the dedup-text parts twice (embed; write), so about 10^8
//! sentences per big-memory machine; docs/builder.md says how to go further.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;

use super::extract::SentenceRow;
use super::{DEDUP_TEXT, DEDUP_TEXT_SEMANTIC, JsonlWriter, read_funnel, read_parts, write_funnel};
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
    // Pass 1: embeddings only (the rows are streamed again to be written).
    let (emb, dim) = embed_all(&parts, semantic.embedder)?;
    let n = emb.len() / dim;
    let mut uf = UnionFind::new(n);
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
    let keep_of = |i: usize| first[&comp[i]];
    let mut has_dupes = vec![false; n];
    for i in 0..n {
        if keep_of(i) != i {
            has_dupes[keep_of(i)] = true;
        }
    }
    // Pass 2: write kept and dropped rows; a kept row always comes before its
    // duplicates, so its text is at hand when they are named.
    let mut funnel = Funnel::default();
    let name = "semantic dedup";
    let mut kept_emb = Vec::new();
    let mut kept_text: std::collections::HashMap<usize, (String, String)> =
        std::collections::HashMap::new();
    let mut kept = JsonlWriter::create(&part.path("sentences.jsonl"))?;
    let mut dropped = JsonlWriter::create(&part.path("dropped.jsonl"))?;
    read_parts(&parts, "sentences.jsonl", |i, row: SentenceRow| {
        if i >= n {
            bail!("dedup-text parts changed while this stage ran");
        }
        let keep = keep_of(i);
        if funnel
            .step(name, "sentences")
            .record((keep != i).then_some("semantic near-duplicate"))
        {
            if has_dupes[i] {
                kept_text.insert(i, (row.text.clone(), row.doc_id.clone()));
            }
            kept_emb.extend_from_slice(&emb[i * dim..(i + 1) * dim]);
            kept.write(&row)
        } else {
            let (text, doc) = &kept_text[&keep];
            dropped.write(&Dropped {
                text: &row.text,
                doc_id: &row.doc_id,
                duplicate_of: text,
                duplicate_doc: doc,
            })
        }
    })?;
    kept.finish()?;
    dropped.finish()?;
    funnel.step(name, "sentences");
    let rows = kept_emb.len() / dim;
    realsyn_data::npy::write_npy(&part.path("text_embeddings.npy"), &kept_emb, &[rows, dim])?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

/// Embed every row, EMBED_BATCH texts at a time, holding only the embeddings.
fn embed_all(
    parts: &[std::path::PathBuf],
    embedder: &mut dyn TextEmbedder,
) -> Result<(Vec<f32>, usize)> {
    // The rows to embed: what each dedup-text part's funnel says it kept.
    let total = parts
        .iter()
        .map(|p| Ok(read_funnel(p)?.steps.last().map_or(0, |s| s.output)))
        .sum::<Result<u64>>()?;
    let bar = realsyn_data::progress::bar(total, "embed text");
    let (mut emb, mut dim) = (Vec::new(), 1);
    let mut batch: Vec<String> = Vec::with_capacity(EMBED_BATCH);
    let mut flush = |batch: &mut Vec<String>, emb: &mut Vec<f32>, dim: &mut usize| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
        let (e, d) = embedder.embed(&texts)?;
        if e.len() != d * texts.len() {
            bail!(
                "{} returned {} values for {} texts of dim {d}",
                embedder.name(),
                e.len(),
                texts.len()
            );
        }
        *dim = d;
        emb.extend(e);
        bar.inc(texts.len() as u64);
        batch.clear();
        Ok(())
    };
    read_parts(parts, "sentences.jsonl", |_, row: SentenceRow| {
        batch.push(row.text);
        if batch.len() == EMBED_BATCH {
            flush(&mut batch, &mut emb, &mut dim)?;
        }
        Ok(())
    })?;
    flush(&mut batch, &mut emb, &mut dim)?;
    bar.finish_and_clear();
    Ok((emb, dim))
}
