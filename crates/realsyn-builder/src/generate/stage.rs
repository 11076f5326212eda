//! Stage `generate`: image semantic augmented generation (paper §3.2, App. A.2).
//! Per image: a caption (the captioner, else its alt text), open-set tags (a CLIP
//! tagger over RAM's tags + nouns mined from the kept sentences), then an LLM merges
//! the top retrieved realistic text with them into `synthetic_per_image` synthetic
//! texts (paper: 1, from T_r^1; more are made from T_r^2, T_r^3, ... in turn).
//!
//! Fans out like `retrieve` (part i reads retrieve's part i). Requests are the
//! expensive part: captions and merged texts are appended to journals in
//! `generate/work/` batch by batch (fixed batches of the part's rows, so a resumed
//! run sends the same batches), and a killed run resumes after the last committed
//! batch with the same output. A request that fails after its retries is counted
//! with its reason and the image keeps its realistic texts without a synthetic one;
//! nothing half-written reaches `samples.jsonl`.
//!
//! Output per part: `samples.jsonl`, one row per paired image in retrieve's order:
//! the pair row, `caption` {text, source}, `tags` [[tag, cosine]], `synthetic`
//! [{text, from_text, model, seed, template_sha256, finish_reason}] and, for texts
//! that failed, `synthetic_missing` (reasons).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::embed::DualEmbedder;
use crate::generate::caption::Captioner;
use crate::generate::journal::Journal;
use crate::generate::llm::{ChatLlm, ChatRequest, Message, failure, validate};
use crate::generate::prompt::MergePrompt;
use crate::generate::tags::{TagIndex, mine_tags, ram_tags};
use crate::retrieve::stage::{PairRow, embed_images};
use crate::store::funnel::Funnel;
use crate::store::manifest::{GenerationSettings, Manifest};
use crate::store::shard::{PartWriter, ShardSpec, complete_parts};
use crate::store::{CLUSTER_TEXT, GENERATE, JsonlWriter, RETRIEVE, iter_jsonl, write_funnel};

/// Where the caption came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Caption {
    pub text: Option<String>,
    /// The captioner's model id, `alt-text`, or `none`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticText {
    pub text: String,
    /// Which realistic text (0 = T_r^1) it was merged from.
    pub from_text: usize,
    pub model: String,
    pub seed: u64,
    pub template_sha256: String,
    pub finish_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedRow {
    /// Row of this part's `pairs.jsonl`.
    pub row: usize,
    #[serde(flatten)]
    pub pair: PairRow,
    pub caption: Caption,
    pub tags: Vec<(String, f32)>,
    pub synthetic: Vec<SyntheticText>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synthetic_missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CaptionRecord {
    row: usize,
    caption: Result<String, String>,
}

/// The models the stage runs.
pub struct GenerateModels<'a> {
    pub llm: &'a mut dyn ChatLlm,
    pub captioner: Option<&'a mut dyn Captioner>,
    /// The pairing dual encoder, for the tagger.
    pub tagger: Option<&'a mut dyn DualEmbedder>,
}

const STEP_CAPTION: &str = "caption";
const STEP_TAGS: &str = "open-set tags";
const STEP_MERGE: &str = "LLM merge (synthetic text)";

fn work_dir(store: &Path) -> PathBuf {
    store.join(GENERATE).join("work")
}

/// A stable per-request seed: the settings' seed, the image and the text index.
fn request_seed(base: u64, image_id: &str, k: usize) -> u64 {
    let h = realsyn_io::hash::Fnv1a::salted(base)
        .write(image_id.as_bytes())
        .write(&(k as u64).to_le_bytes())
        .finish();
    // JSON and most servers take seeds as signed 64-bit (vLLM: int); stay positive.
    h >> 1
}

/// The tag vocabulary and its embeddings: built once per store (RAM's tags + mined
/// nouns), kept in `generate/work/tags/`.
fn tag_index(
    store: &Path,
    m: &Manifest,
    s: &GenerationSettings,
    enc: &mut dyn DualEmbedder,
) -> Result<TagIndex> {
    let dir = work_dir(store).join("tags");
    if let Some(idx) = TagIndex::load(&dir)? {
        return Ok(idx);
    }
    let tags_cfg = s.tags.as_ref().expect("tags are on");
    let mut tags = ram_tags();
    let known: HashSet<String> = tags.iter().map(|t| t.to_lowercase()).collect();
    if tags_cfg.mined > 0 {
        match m.cat_filter()? {
            Some(cat) => {
                let part = complete_parts(&store.join(CLUSTER_TEXT))?.remove(0);
                let texts: Vec<String> =
                    iter_jsonl::<crate::extract::stage::SentenceRow>(&part.join("sentences.jsonl"))
                        .map(|r| r.map(|r| r.text))
                        .collect::<Result<_>>()?;
                let mined = mine_tags(
                    texts.iter().map(String::as_str),
                    &cat,
                    tags_cfg.mined,
                    &known,
                );
                eprintln!(
                    "generate: {} RAM tags + {} mined from the sentences",
                    tags.len(),
                    mined.len()
                );
                tags.extend(mined);
            }
            None => eprintln!(
                "generate: no tags mined (the store runs without the CAT tagger, --no-cat)"
            ),
        }
    }
    let idx = TagIndex::build(tags, enc)?;
    let tmp = work_dir(store).join(".tmp-tags");
    let _ = std::fs::remove_dir_all(&tmp);
    idx.save(&tmp)?;
    std::fs::rename(&tmp, &dir)?;
    Ok(idx)
}

pub fn run(
    store: &Path,
    m: &Manifest,
    s: &GenerationSettings,
    shard: ShardSpec,
    models: GenerateModels<'_>,
) -> Result<Option<Funnel>> {
    let retrieved = complete_parts(&store.join(RETRIEVE))
        .context("generate merges the texts retrieve finds: run retrieve first")?;
    let Some(pairs_dir) = retrieved.iter().find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy() == shard.dir_name())
    }) else {
        bail!(
            "retrieve has {} parts and generate was asked for part {shard}: generate runs with retrieve's parts",
            retrieved.len()
        );
    };
    let Some(part) = PartWriter::begin(&store.join(GENERATE), shard)? else {
        return Ok(None);
    };
    let pairs: Vec<PairRow> = iter_jsonl(&pairs_dir.join("pairs.jsonl")).collect::<Result<_>>()?;
    let prompt = MergePrompt::new(&s.template)?;
    let GenerateModels {
        llm,
        mut captioner,
        tagger,
    } = models;
    let mut funnel = Funnel::default();

    // Tags: every image of the part embedded each run (fixed batches, so the same
    // scores on a resumed run), scores kept to 4 decimals.
    let tags: Vec<Vec<(String, f32)>> = match (&s.tags, tagger) {
        (None, _) => vec![Vec::new(); pairs.len()],
        (Some(_), None) => bail!("the tagger needs the pairing dual encoder loaded"),
        (Some(t), Some(enc)) => {
            let index = tag_index(store, m, s, enc)?;
            let rows: Vec<(usize, crate::extract::stage::ImageRow)> = pairs
                .iter()
                .enumerate()
                .map(|(i, p)| (i, p.image.clone()))
                .collect();
            let embedded = embed_images(store, &rows, enc)?;
            embedded
                .iter()
                .map(|e| match e {
                    Ok(v) => index
                        .top(v, t.top_k, t.min_cosine)
                        .into_iter()
                        .map(|(tag, sc)| (tag, (sc * 1e4).round() / 1e4))
                        .collect(),
                    Err(_) => Vec::new(),
                })
                .collect()
        }
    };
    if s.tags.is_some() {
        for t in &tags {
            let step = funnel.step(STEP_TAGS, "images");
            if t.is_empty() {
                step.drop("no tag above --tag-min-cosine");
            } else {
                step.pass();
            }
        }
    }

    // Captions.
    let captions: Vec<Caption> = match captioner.as_deref_mut() {
        Some(c) => caption_all(store, shard, &pairs, c)?,
        None => pairs
            .iter()
            .map(|p| {
                match p
                    .image
                    .alt
                    .as_deref()
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                {
                    Some(alt) => Caption {
                        text: Some(alt.to_string()),
                        source: "alt-text".into(),
                    },
                    None => Caption {
                        text: None,
                        source: "none".into(),
                    },
                }
            })
            .collect(),
    };
    for c in &captions {
        let step = funnel.step(STEP_CAPTION, "images");
        match (c.text.is_some(), c.source.as_str()) {
            (true, "alt-text") => step.drop("no captioner: alt text used as the caption"),
            (true, _) => step.pass(),
            (false, "none") => step.drop("no captioner and no alt text: empty caption"),
            (false, _) => step.drop("captioner failed: empty caption"),
        }
    }

    // The merge, journaled in fixed batches of rows.
    let journal_path = work_dir(store).join(format!("{}.merge.jsonl", shard.dir_name()));
    let (mut journal, done): (Journal, Vec<GeneratedRow>) = Journal::open(&journal_path)?;
    let mut rows: BTreeMap<usize, GeneratedRow> = done.into_iter().map(|r| (r.row, r)).collect();
    let batch = llm.batch_size().max(1);
    let model_id = llm.model_id();
    let template_sha = prompt.hash();
    let started = Instant::now();
    let (mut new_images, mut new_tokens, mut queued) = (0usize, 0usize, 0usize);
    let bar = realsyn_data::progress::bar(pairs.len() as u64, "LLM merge");
    bar.inc(rows.len() as u64);
    for start in (0..pairs.len()).step_by(batch) {
        let end = (start + batch).min(pairs.len());
        let todo: Vec<usize> = (start..end).filter(|r| !rows.contains_key(r)).collect();
        if todo.is_empty() {
            continue;
        }
        let mut requests = Vec::new();
        let mut owners = Vec::new();
        for &r in &todo {
            let p = &pairs[r];
            let tag_names: Vec<&str> = tags[r].iter().map(|(t, _)| t.as_str()).collect();
            for k in 0..s.synthetic_per_image {
                let Some(raw) = p.texts.get(k % p.texts.len().max(1)) else {
                    continue;
                };
                let content = prompt.render(
                    &raw.text,
                    captions[r].text.as_deref().unwrap_or(""),
                    &tag_names,
                );
                requests.push(ChatRequest {
                    messages: vec![Message {
                        role: "user".into(),
                        content,
                    }],
                    max_tokens: s.max_tokens,
                    temperature: s.temperature,
                    top_p: s.top_p,
                    seed: request_seed(s.seed, &p.image.id, k),
                    stop: Vec::new(),
                });
                owners.push((r, k % p.texts.len().max(1)));
            }
        }
        let replies = llm.complete(&requests);
        if replies.len() != requests.len() {
            bail!(
                "{model_id} answered {} of {} requests",
                replies.len(),
                requests.len()
            );
        }
        // Offline batch mode: rows with a request still queued are not final; they
        // are left out of the journal and the part stays open.
        let waiting: HashSet<usize> = replies
            .iter()
            .zip(&owners)
            .filter(|(r, _)| *r == &Err(failure::QUEUED))
            .map(|(_, (row, _))| *row)
            .collect();
        queued += waiting.len();
        let mut finished: BTreeMap<usize, GeneratedRow> = todo
            .iter()
            .map(|&r| {
                (
                    r,
                    GeneratedRow {
                        row: r,
                        pair: pairs[r].clone(),
                        caption: captions[r].clone(),
                        tags: tags[r].clone(),
                        synthetic: Vec::new(),
                        synthetic_missing: Vec::new(),
                    },
                )
            })
            .collect();
        for ((req, reply), (r, from)) in requests.iter().zip(replies).zip(owners) {
            let row = finished.get_mut(&r).expect("owner row");
            match reply.and_then(|rep| {
                new_tokens += rep.completion_tokens;
                validate(req, &rep)
                    .and_then(|t| match prompt.copied_by(&t) {
                        true => Err(failure::TEMPLATE),
                        false => Ok(t),
                    })
                    .map(|t| (t, rep.finish_reason))
            }) {
                Ok((text, finish_reason)) => row.synthetic.push(SyntheticText {
                    text,
                    from_text: from,
                    model: model_id.clone(),
                    seed: req.seed,
                    template_sha256: template_sha.clone(),
                    finish_reason,
                }),
                Err(reason) => row.synthetic_missing.push(reason.to_string()),
            }
        }
        let records: Vec<GeneratedRow> = finished
            .into_values()
            .filter(|r| !waiting.contains(&r.row))
            .collect();
        journal.append(&records)?;
        new_images += records.len();
        bar.inc(records.len() as u64);
        for rec in records {
            rows.insert(rec.row, rec);
        }
    }
    bar.finish_and_clear();
    if queued > 0 {
        let run = match &s.llm {
            crate::store::manifest::LlmChoice::Batch { dir, model } => format!(
                "vllm run-batch -i {} -o {} --model {model}",
                dir.join("requests.jsonl").display(),
                dir.join("results.jsonl").display()
            ),
            _ => "the batch run".into(),
        };
        bail!(
            "{queued} requests of part {shard} are queued for the offline batch run: run\n  {run}\n\
             then rerun this command (finished rows are kept; results.jsonl may hold every part's answers)"
        );
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    if new_images > 0 {
        eprintln!(
            "generate {shard}: {new_images} images in {secs:.1} s ({:.2} images/s, {:.1} tokens/s) with {model_id}",
            new_images as f64 / secs,
            new_tokens as f64 / secs
        );
    }

    let mut out = JsonlWriter::create(&part.path("samples.jsonl"))?;
    for r in 0..pairs.len() {
        let row = rows
            .get(&r)
            .with_context(|| format!("row {r} missing from the journal"))?;
        let step = funnel.step(STEP_MERGE, "synthetic texts");
        for _ in &row.synthetic {
            step.pass();
        }
        for reason in &row.synthetic_missing {
            step.drop(reason);
        }
        out.write(row)?;
    }
    out.finish()?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    let _ = std::fs::remove_file(&journal_path);
    let _ = std::fs::remove_file(caption_journal(store, shard));
    Ok(Some(funnel))
}

fn caption_journal(store: &Path, shard: ShardSpec) -> PathBuf {
    work_dir(store).join(format!("{}.captions.jsonl", shard.dir_name()))
}

/// Captions for every row by the captioner, journaled in batches (images decoded
/// from the tar shards, `captioner.batch_size()` at a time, in row order).
fn caption_all(
    store: &Path,
    shard: ShardSpec,
    pairs: &[PairRow],
    captioner: &mut dyn Captioner,
) -> Result<Vec<Caption>> {
    let path = caption_journal(store, shard);
    let (mut journal, done): (Journal, Vec<CaptionRecord>) = Journal::open(&path)?;
    let mut have: BTreeMap<usize, Result<String, String>> =
        done.into_iter().map(|c| (c.row, c.caption)).collect();
    let todo: Vec<(usize, crate::extract::stage::ImageRow)> = pairs
        .iter()
        .enumerate()
        .filter(|(i, _)| !have.contains_key(i))
        .map(|(i, p)| (i, p.image.clone()))
        .collect();
    let batch = captioner.batch_size().max(1);
    for chunk in todo.chunks(batch) {
        let decoded = crate::retrieve::stage::decode_images(store, chunk)?;
        let (mut imgs, mut slots) = (Vec::new(), Vec::new());
        let mut records = Vec::new();
        for ((row, _), d) in chunk.iter().zip(decoded) {
            match d {
                Ok(img) => {
                    imgs.push(img);
                    slots.push(*row);
                }
                Err(e) => records.push(CaptionRecord {
                    row: *row,
                    caption: Err(e.to_string()),
                }),
            }
        }
        for (row, c) in slots.into_iter().zip(captioner.caption(&imgs)) {
            records.push(CaptionRecord {
                row,
                caption: c.map_err(str::to_string),
            });
        }
        records.sort_by_key(|r| r.row);
        journal.append(&records)?;
        for r in records {
            have.insert(r.row, r.caption);
        }
    }
    let model = captioner.model_id();
    Ok((0..pairs.len())
        .map(|i| match have.get(&i) {
            Some(Ok(t)) => Caption {
                text: Some(t.clone()),
                source: model.clone(),
            },
            _ => Caption {
                text: None,
                source: model.clone(),
            },
        })
        .collect())
}
