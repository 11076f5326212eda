//! Stage `filter-text`: information entropy (paper Eq. 1) of every sentence with word
//! probabilities from the whole corpus (the word counts of every extract part summed
//! first), keeping entropy >= 0.3. Part i reads extract part i.

use std::path::Path;

use anyhow::{Result, bail};

use super::extract::SentenceRow;
use super::{EXTRACT, FILTER_TEXT, read_jsonl, write_funnel, write_jsonl};
use crate::funnel::Funnel;
use crate::shard::{PartWriter, ShardSpec, complete_parts};
use crate::text_filters::{MIN_ENTROPY, WordCounts, words};

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

pub fn run(
    store: &Path,
    shard: ShardSpec,
    counts: &WordCounts,
    min_entropy: f64,
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
    write_jsonl(&part.path("sentences.jsonl"), &kept)?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

pub const DEFAULT_MIN_ENTROPY: f64 = MIN_ENTROPY;
