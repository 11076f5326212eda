//! Retrieval with a real signal, without pretrained weights: no CLIP reaches this
//! machine, so a small one is trained on a store's images paired with sentences of
//! their own page (`write_training_shards`), and retrieval is judged by how often an
//! image of a held-out page gets a sentence of its own page (`own_page_rate`),
//! against chance (3 of the corpus' sentences drawn at random). docs/pairing.md
//! gives the recipe and the rates.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde::Deserialize;

use crate::cluster::stage as cluster_text;
use crate::extract::stage::{ImageRow, SentenceRow};
use crate::store::manifest::Manifest;
use crate::store::shard::complete_parts;
use crate::store::{DEDUP_IMAGES, RETRIEVE, read_parts};

/// Whether `doc_id` belongs to the held-out pages (1 in `every`, by a stable hash).
pub fn held_out(doc_id: &str, every: u64) -> bool {
    every > 0 && realsyn_io::hash::fnv1a(doc_id.as_bytes()) % every == 0
}

/// What is kept out of training: whole pages (images and a page never seen
/// together: the hardest test), or single images (1 in `every`, by a stable hash of
/// the image id), whose page's other images and sentences were trained on, as a
/// new photo of a known subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldOut {
    Pages,
    Images,
}

impl std::str::FromStr for HoldOut {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pages" => Ok(HoldOut::Pages),
            "images" => Ok(HoldOut::Images),
            other => bail!("--hold-out {other:?}: pages or images"),
        }
    }
}

impl HoldOut {
    /// Whether the image `image_id` of page `doc_id` is held out (1 in `every`).
    pub fn holds(self, doc_id: &str, image_id: &str, every: u64) -> bool {
        match self {
            HoldOut::Pages => held_out(doc_id, every),
            HoldOut::Images => held_out(image_id, every),
        }
    }
}

/// RealSyn-layout shards (`KEY.jpg|png`, `KEY.txt`, `KEY.json` with `text2`,
/// `text3`, `syn_text`) of the kept images of training pages (not held out), each
/// with the 4 sentences of its own page nearest to it (by item position). Returns
/// (training images, held-out images).
pub fn write_training_shards(
    store: &Path,
    out: &Path,
    hold: HoldOut,
    every: u64,
) -> Result<(usize, usize)> {
    let m = Manifest::read(store)?;
    let mut by_doc: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    let parts = cluster_text::sentence_parts(store, &m)?;
    read_parts(&parts, "sentences.jsonl", |_, s: SentenceRow| {
        by_doc
            .entry(s.doc_id)
            .or_default()
            .push((s.position, s.text));
        Ok(())
    })?;
    let images = complete_parts(&store.join(DEDUP_IMAGES))?.remove(0);
    let mut rows: Vec<ImageRow> = Vec::new();
    read_parts(&[images], "images.jsonl", |_, r: ImageRow| {
        rows.push(r);
        Ok(())
    })?;
    let (mut train, mut held) = (Vec::new(), 0);
    for r in rows {
        if hold.holds(&r.doc_id, &r.id, every) {
            held += 1;
        } else if by_doc.get(&r.doc_id).is_some_and(|s| !s.is_empty()) {
            train.push(r);
        }
    }
    // The bytes of the training images, from the store's tar shards.
    let mut wanted: BTreeMap<String, Option<Bytes>> =
        train.iter().map(|r| (r.id.clone(), None)).collect();
    let mut folders: Vec<&str> = train.iter().map(|r| r.shard.as_str()).collect();
    folders.sort_unstable();
    folders.dedup();
    let skips = realsyn_data::wds::SkipCounter::new();
    for folder in folders {
        let tars = crate::store::tars_in(&store.join(folder))?;
        for sample in tars
            .iter()
            .flat_map(|t| realsyn_data::wds::read_shard(t, &skips))
        {
            if let Some(slot) = wanted.get_mut(&sample.key) {
                *slot = sample
                    .first_of(realsyn_data::image::IMAGE_EXTENSIONS)
                    .cloned();
            }
        }
    }
    let mut w = realsyn_data::wds::ShardWriter::new(out, 1000, 0)?;
    let mut n = 0;
    for r in &train {
        let Some(Some(bytes)) = wanted.get(&r.id) else {
            bail!("image {} is not in the store's tar shards", r.id);
        };
        let mut near: Vec<&(usize, String)> = by_doc[&r.doc_id].iter().collect();
        near.sort_by_key(|(p, _)| p.abs_diff(r.position));
        let texts: Vec<&str> = (0..4).map(|i| near[i % near.len()].1.as_str()).collect();
        let key = w.next_key();
        let json = serde_json::json!({
            "key": key, "status": "success", "text2": texts[1], "text3": texts[2],
            "syn_text": texts[3], "width": r.width, "height": r.height, "url": r.doc_url,
        });
        w.write(
            &key,
            &[
                (r.ext.as_str(), bytes.clone()),
                ("txt", Bytes::from(texts[0].to_string())),
                ("json", Bytes::from(serde_json::to_vec(&json)?)),
            ],
        )?;
        n += 1;
    }
    w.finish()?;
    Ok((n, held))
}

/// How often the images of a paired store got a sentence of their own page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OwnPageRate {
    pub images: usize,
    /// Images with at least one retrieved sentence from their own page.
    pub hits: usize,
    pub rate: f64,
    /// The rate 3 random sentences of the corpus would give (averaged over images).
    pub chance: f64,
}

#[derive(Deserialize)]
struct PairLite {
    id: String,
    doc_id: String,
    texts: Vec<TextLite>,
}

#[derive(Deserialize)]
struct TextLite {
    doc_id: String,
}

/// The rate over the held-out images (`held = true`: the test of generalisation),
/// or over the training images (the model has seen those pairs).
pub fn own_page_rate(store: &Path, hold: HoldOut, every: u64, held: bool) -> Result<OwnPageRate> {
    let m = Manifest::read(store)?;
    let mut per_doc: HashMap<String, usize> = HashMap::new();
    let mut total = 0usize;
    read_parts(
        &cluster_text::sentence_parts(store, &m)?,
        "sentences.jsonl",
        |_, s: SentenceRow| {
            *per_doc.entry(s.doc_id).or_default() += 1;
            total += 1;
            Ok(())
        },
    )?;
    let parts = complete_parts(&store.join(RETRIEVE)).context("run retrieve first")?;
    let (mut images, mut hits, mut chance) = (0usize, 0usize, 0f64);
    read_parts(&parts, "pairs.jsonl", |_, p: PairLite| {
        if hold.holds(&p.doc_id, &p.id, every) != held {
            return Ok(());
        }
        images += 1;
        if p.texts.iter().any(|t| t.doc_id == p.doc_id) {
            hits += 1;
        }
        // P(at least one of k draws without replacement is from the page).
        let (own, k) = (per_doc.get(&p.doc_id).copied().unwrap_or(0), p.texts.len());
        let miss: f64 = (0..k)
            .map(|i| (total - own).saturating_sub(i) as f64 / (total - i).max(1) as f64)
            .product();
        chance += 1.0 - miss;
        Ok(())
    })?;
    Ok(OwnPageRate {
        images,
        hits,
        rate: hits as f64 / images.max(1) as f64,
        chance: chance / images.max(1) as f64,
    })
}
