//! Stage `dedup-text`: near-exact sentence dedup. A sentence's key is the hash of its
//! words (case, punctuation and spacing ignored); the first occurrence in corpus order
//! (filter-text part, then line) is kept. Part i of N owns the keys with
//! `key % N == i`, so N machines split the work with no shared state; each part
//! streams every filter-text part and keeps only its keys in memory.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;

use crate::extract::stage::SentenceRow;
use crate::filter::text_filters::{dedup_key, words};
use crate::store::funnel::Funnel;
use crate::store::shard::{PartWriter, ShardSpec, complete_parts};
use crate::store::{DEDUP_TEXT, FILTER_TEXT, read_parts, write_funnel, write_jsonl};

pub fn run(store: &Path, shard: ShardSpec) -> Result<Option<Funnel>> {
    let parts = complete_parts(&store.join(FILTER_TEXT))?;
    let Some(part) = PartWriter::begin(&store.join(DEDUP_TEXT), shard)? else {
        return Ok(None);
    };
    let mut funnel = Funnel::default();
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    read_parts(&parts, "sentences.jsonl", |_, row: SentenceRow| {
        let key = dedup_key(&words(&row.text));
        if key % shard.count as u64 != shard.index as u64 {
            return Ok(());
        }
        if funnel
            .step("near-exact dedup", "sentences")
            .record((!seen.insert(key)).then_some("duplicate text"))
        {
            kept.push(row);
        }
        Ok(())
    })?;
    funnel.step("near-exact dedup", "sentences");
    write_jsonl(&part.path("sentences.jsonl"), &kept)?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}
