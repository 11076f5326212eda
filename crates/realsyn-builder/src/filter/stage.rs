//! Stage `filter-text`: the per-sentence model filters of paper 3.1, steps 2 and 3.
//! Information entropy (Eq. 1) with word probabilities from the whole corpus (the word
//! counts of every extract part summed first), keeping entropy >= 0.3; then, when a
//! language model is given, GPT-2 perplexity in [30, 200]. Part i reads extract part i.

use std::path::Path;

use anyhow::{Result, bail};

use crate::extract::stage::SentenceRow;
use crate::filter::perplexity::{PerplexityRange, PerplexityScorer, SCORE_CHUNK};
use crate::filter::text_filters::{MIN_ENTROPY, WordCounts, words};
use crate::store::funnel::Funnel;
use crate::store::shard::{PartWriter, ShardSpec, complete_parts};
use crate::store::{EXTRACT, FILTER_TEXT, read_jsonl, write_funnel, write_jsonl};

/// The corpus-wide word counts (every extract part must be complete).
pub fn corpus_counts(store: &Path) -> Result<WordCounts> {
    let mut total = WordCounts::default();
    for part in complete_parts(&store.join(EXTRACT))? {
        total.merge(&WordCounts::from_tsv(&std::fs::read_to_string(
            part.join("word_counts.tsv"),
        )?)?);
    }
    Ok(total)
}

/// The perplexity step: a scorer and the kept range.
pub struct PerplexityFilter<'a> {
    pub scorer: &'a mut dyn PerplexityScorer,
    pub range: PerplexityRange,
}

pub fn run(
    store: &Path,
    shard: ShardSpec,
    counts: &WordCounts,
    min_entropy: f64,
    perplexity: Option<PerplexityFilter>,
) -> Result<Option<Funnel>> {
    let parts = complete_parts(&store.join(EXTRACT))?;
    if parts.len() != shard.count {
        bail!(
            "extract has {} parts; run filter-text with --shard i/{}",
            parts.len(),
            parts.len()
        );
    }
    let Some(part) = PartWriter::begin(&store.join(FILTER_TEXT), shard)? else {
        return Ok(None);
    };
    let mut funnel = Funnel::default();
    let step_name = format!("entropy >= {min_entropy}");
    let info = counts.information();
    let mut kept = Vec::new();
    read_jsonl(
        &parts[shard.index].join("sentences.jsonl"),
        |mut row: SentenceRow| {
            let e = info.entropy(&words(&row.text));
            if funnel
                .step(&step_name, "sentences")
                .record((e < min_entropy).then_some("low entropy"))
            {
                row.entropy = Some(e);
                kept.push(row);
            }
            Ok(())
        },
    )?;
    funnel.step(&step_name, "sentences");
    if let Some(filter) = perplexity {
        kept = perplexity_step(kept, filter, &mut funnel, shard)?;
    }
    write_jsonl(&part.path("sentences.jsonl"), &kept)?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

/// Score the entropy survivors in chunks and keep those inside the range.
fn perplexity_step(
    rows: Vec<SentenceRow>,
    filter: PerplexityFilter,
    funnel: &mut Funnel,
    shard: ShardSpec,
) -> Result<Vec<SentenceRow>> {
    let name = filter.range.step_name();
    funnel.step(&name, "sentences");
    let bar = realsyn_data::progress::bar(rows.len() as u64, &format!("perplexity {shard}"));
    let mut kept = Vec::with_capacity(rows.len());
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<SentenceRow> = rows.by_ref().take(SCORE_CHUNK).collect();
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        let scores = filter.scorer.perplexities(&texts)?;
        if scores.len() != chunk.len() {
            bail!(
                "{} returned {} scores for {} sentences",
                filter.scorer.name(),
                scores.len(),
                chunk.len()
            );
        }
        let n = texts.len() as u64;
        drop(texts);
        for (mut row, ppl) in chunk.into_iter().zip(scores) {
            if funnel
                .step(&name, "sentences")
                .record(filter.range.drop_reason(ppl))
            {
                row.perplexity = ppl;
                kept.push(row);
            }
        }
        bar.inc(n);
    }
    bar.finish_and_clear();
    Ok(kept)
}

pub const DEFAULT_MIN_ENTROPY: f64 = MIN_ENTROPY;
