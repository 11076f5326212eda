//! Stage `dedup-text-semantic`: semantic sentence dedup (paper 3.1, step 4, after the
//! near-exact pass). Every sentence kept by `dedup-text` is embedded (any
//! `TextEmbedder`; the CLI provides the CLIP text tower, the encoder the paper also
//! clusters sentences with), linked to the sentences whose cosine is at least the
//! threshold (LSH + exact verification, `dedup::link_cosine`; or, with
//! `partitions`, SemDeDup's k-means partitions with all pairs within each,
//! `dedup::link_cosine_in_clusters`), and one sentence is
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

use anyhow::{Context, Result, bail};
use realsyn_io::{Embeddings, encode_in_batches};
use serde::Serialize;

use crate::dedup::link::{CosinePairs, UnionFind, link_semantic};
use crate::embed::TextEmbedder;
use crate::extract::stage::SentenceRow;
use crate::store::funnel::Funnel;
use crate::store::shard::{PartWriter, ShardSpec, complete_parts};
use crate::store::{
    DEDUP_TEXT, DEDUP_TEXT_SEMANTIC, JsonlWriter, iter_parts, read_funnel, read_parts, write_funnel,
};

pub const DEFAULT_TEXT_SEMANTIC_THRESHOLD: f32 = 0.95;
const EMBED_BATCH: usize = 256;

/// The embedder, the cosine at which two sentences are duplicates, and how the
/// pairs above it are found (LSH, or SemDeDup's partitions).
pub struct TextSemantic<'a> {
    pub embedder: &'a mut dyn TextEmbedder,
    pub threshold: f32,
    pub pairs: CosinePairs<'a>,
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
    let emb = embed_all(&parts, semantic.embedder)?;
    let n = emb.rows();
    let mut uf = UnionFind::new(n);
    link_semantic(
        emb.as_slice(),
        emb.width(),
        semantic.threshold,
        semantic.pairs,
        &mut uf,
    )?;
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
    let mut kept_emb = Embeddings::empty(emb.width());
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
            kept_emb.push_row(emb.row(i))?;
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
    kept_emb.write_npy(&part.path("text_embeddings.npy"))?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

/// Embed every row, EMBED_BATCH texts at a time, holding only the embeddings.
fn embed_all(parts: &[std::path::PathBuf], embedder: &mut dyn TextEmbedder) -> Result<Embeddings> {
    // The rows to embed: what each dedup-text part's funnel says it kept.
    let total = parts
        .iter()
        .map(|p| Ok(read_funnel(p)?.steps.last().map_or(0, |s| s.output)))
        .sum::<Result<u64>>()?;
    let bar = realsyn_data::progress::bar(total, "embed text");
    // Streamed: only the embeddings are held.
    let texts = iter_parts::<SentenceRow>(parts, "sentences.jsonl").map(|row| row.map(|r| r.text));
    let emb = encode_in_batches(
        texts,
        EMBED_BATCH,
        |batch: &[String]| {
            let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
            embedder.embed(&texts)
        },
        |n| bar.inc(n as u64),
    )
    .with_context(|| embedder.name())?;
    bar.finish_and_clear();
    Ok(emb)
}
