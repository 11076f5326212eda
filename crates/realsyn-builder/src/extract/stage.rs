//! Stage `extract`: documents of one input part -> the image store and the sentence
//! store of that part.
//!
//! Per image: read the bytes (local path, `file://`, or a URL downloaded with
//! `fetch`, concurrently per batch of documents), size from the header, the
//! size/aspect rule, one decode for the perceptual hash, then the bytes go into the part's tar shards under their content address.
//! Per text item: Punkt sentences, then the emoji/URL and word-count rules. Kept
//! sentences feed the part's word counts (the entropy filter's counting pass).
//! Every document or image that could not be read is listed with its reason in the
//! part's `skips.jsonl` (img2dataset keeps a status per sample the same way); the
//! funnel only counts them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use bytes::Bytes;
use rayon::prelude::*;
use realsyn_data::wds::ShardWriter;
use serde::{Deserialize, Serialize};

use crate::extract::document::Document;
use crate::extract::fetch::{FetchOptions, FetchResult, Fetcher};
use crate::extract::images;
use crate::extract::ingest::Input;
use crate::extract::punkt::SentenceSplitter;
use crate::filter::cat::CatFilter;
use crate::filter::text_filters::{WordCounts, rule_violation, words};
use crate::store::funnel::Funnel;
use crate::store::shard::{PartWriter, ShardSpec};
use crate::store::{EXTRACT, write_funnel, write_jsonl};

pub const CAT_STEP: &str = "complexity + action (CAT)";

/// One stored image with its provenance and the scores computed on the way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRow {
    /// Content address (SHA-256 prefix); the tar member is `ID.EXT`.
    pub id: String,
    pub ext: String,
    /// The folder of tar shards holding the bytes, relative to the store.
    pub shard: String,
    /// The tar file in `shard` holding them (`00003.tar`), so readers open that
    /// tar only. Stores written before it have none: readers scan the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar: Option<String>,
    pub width: u32,
    pub height: u32,
    /// `imagehash.phash`, 16 hex digits.
    pub phash: String,
    pub doc_id: String,
    pub doc_url: Option<String>,
    pub source: String,
    /// Index of the image among the document's items.
    pub position: usize,
    pub src: String,
    pub alt: Option<String>,
}

/// One kept sentence with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceRow {
    pub text: String,
    pub doc_id: String,
    pub doc_url: Option<String>,
    pub source: String,
    /// Index of the text item among the document's items, and of the sentence in it.
    pub position: usize,
    pub sentence: usize,
    pub words: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    /// GPT-2 perplexity (filter-text, when a model is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
}

pub struct ExtractOptions {
    pub store: PathBuf,
    pub shard: ShardSpec,
    pub images_per_tar: usize,
    /// Download URL images; `None` drops them as "url (fetch disabled)".
    pub fetch: Option<FetchOptions>,
    /// The CAT complexity + action filter; `None` skips it.
    pub cat: Option<std::sync::Arc<CatFilter>>,
    /// Which local image files may be read, and how much of them.
    pub local: LocalImages,
}

/// The rule for images named by local path (`<img src="...">`, MMC4 `image_name`): a
/// document may only name regular files inside the input roots (not `/etc/...`,
/// `../../`, `/dev/zero` or a FIFO), of at most `max_bytes`.
#[derive(Debug, Clone)]
pub struct LocalImages {
    /// Canonical input folders (a file input's folder); `None`: any path allowed.
    pub roots: Option<Vec<PathBuf>>,
    pub max_bytes: u64,
}

impl LocalImages {
    /// Inside `inputs` (folders, or the folders of input files), at most `max_bytes`.
    pub fn inside(inputs: &[PathBuf], max_bytes: u64) -> Self {
        let roots = inputs
            .iter()
            .filter_map(|p| {
                let dir = if p.is_dir() { p.as_path() } else { p.parent()? };
                std::fs::canonicalize(dir).ok()
            })
            .collect();
        Self {
            roots: Some(roots),
            max_bytes,
        }
    }

    /// Read `path` under the rule; `Err(reason)` for the funnel.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, &'static str> {
        use std::io::Read;
        let real = std::fs::canonicalize(path).map_err(|_| "missing file")?;
        if let Some(roots) = &self.roots {
            if !roots.iter().any(|r| real.starts_with(r)) {
                return Err("local path outside the input");
            }
        }
        let meta = std::fs::metadata(&real).map_err(|_| "missing file")?;
        if !meta.is_file() {
            return Err("not a regular file");
        }
        if meta.len() > self.max_bytes {
            return Err("file too large");
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(&real)
            .map_err(|_| "missing file")?
            .take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|_| "unreadable file")?;
        if bytes.len() as u64 > self.max_bytes {
            return Err("file too large");
        }
        Ok(bytes)
    }
}

/// The download status of one URL image (`fetch.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchRow {
    pub url: String,
    /// `ok` or the reason it failed.
    pub status: String,
    pub bytes: u64,
}

/// What one document yields, computed in parallel and written in input order.
/// One document or image that could not be read, and why (`skips.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkipRow {
    /// The funnel step that dropped it (`ingest`, `read image`, `size and aspect`, `decode`).
    pub step: String,
    /// The input file (documents) or the image's `src` (images).
    pub what: String,
    /// The document it belongs to (images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    pub reason: String,
}

#[derive(Default)]
struct DocOutput {
    skips: Vec<SkipRow>,
    images: Vec<(ImageRow, Bytes)>,
    sentences: Vec<SentenceRow>,
    /// Words of the kept sentences (the entropy filter's counting pass).
    counts: WordCounts,
    funnel: Funnel,
}

/// Run the part; returns its funnel, or `None` when the part was already complete.
pub fn run(input: &Input, opts: &ExtractOptions) -> Result<Option<Funnel>> {
    let stage_dir = opts.store.join(EXTRACT);
    let Some(part) = PartWriter::begin(&stage_dir, opts.shard)? else {
        return Ok(None);
    };
    let splitter = SentenceSplitter::english();
    let mut funnel = Funnel::default();
    // Fix the step order of the table.
    for (name, unit) in [
        ("ingest", "documents"),
        ("read image", "images"),
        ("size and aspect", "images"),
        ("decode", "images"),
        ("segment", "sentences"),
        ("emoji, url, length", "sentences"),
    ] {
        funnel.step(name, unit);
    }
    if opts.cat.is_some() {
        funnel.step(CAT_STEP, "sentences");
    }
    let tar_dir = part.path("images");
    let mut tars = ShardWriter::new(&tar_dir, opts.images_per_tar, 0)?;
    let mut image_rows = Vec::new();
    let mut image_skips: Vec<SkipRow> = Vec::new();
    let mut sentence_rows = Vec::new();
    let mut counts = WordCounts::default();
    // Image id -> the tar holding it (an image met twice in a part is stored once).
    let mut stored: HashMap<String, String> = HashMap::new();
    let mut batch: Vec<Document> = Vec::new();
    let fetcher = opts.fetch.clone().map(Fetcher::new).transpose()?;
    let mut fetch_rows = Vec::new();
    let bar = realsyn_data::progress::bar(0, "extract");
    let part_name = opts.shard.dir_name();

    let mut flush = |batch: &mut Vec<Document>, funnel: &mut Funnel| -> Result<()> {
        // URL images of the batch, each downloaded once, concurrently.
        let mut urls: Vec<&str> = batch
            .iter()
            .flat_map(|d| d.images().map(|(_, src, _)| src))
            .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
            .collect();
        urls.sort_unstable();
        urls.dedup();
        let fetched: HashMap<String, FetchResult> = match &fetcher {
            Some(f) if !urls.is_empty() => {
                let results = f.fetch_all(&urls);
                for (u, r) in urls.iter().zip(&results) {
                    fetch_rows.push(FetchRow {
                        url: u.to_string(),
                        status: r.as_ref().map_or_else(|e| e.to_string(), |_| "ok".into()),
                        bytes: r.as_ref().map_or(0, |b| b.len() as u64),
                    });
                }
                urls.iter().map(|u| u.to_string()).zip(results).collect()
            }
            _ => HashMap::new(),
        };
        let outs: Vec<DocOutput> = batch
            .par_iter()
            .map(|d| process(d, &splitter, &fetched, opts.cat.as_deref(), &opts.local))
            .collect();
        for out in outs {
            funnel.merge(&out.funnel);
            image_skips.extend(out.skips);
            for (mut row, bytes) in out.images {
                if !stored.contains_key(&row.id) {
                    tars.write(&row.id, &[(row.ext.as_str(), bytes)])?;
                    let tar = tars
                        .open_shard_name()
                        .expect("a shard is open after a write");
                    stored.insert(row.id.clone(), tar);
                }
                row.shard = format!("{EXTRACT}/{part_name}/images");
                row.tar = stored.get(&row.id).cloned();
                image_rows.push(row);
            }
            counts.merge(&out.counts);
            sentence_rows.extend(out.sentences);
        }
        bar.inc(batch.len() as u64);
        batch.clear();
        Ok(())
    };
    let mut error = None;
    let mut skipped = Funnel::default();
    let mut ingest_skips: Vec<SkipRow> = Vec::new();
    input.documents(
        opts.shard,
        &mut |d| {
            batch.push(d);
            if batch.len() >= 64 && error.is_none() {
                if let Err(e) = flush(&mut batch, &mut funnel) {
                    error = Some(e);
                }
            }
        },
        &mut |reason, what| {
            skipped.step("ingest", "documents").drop(reason);
            ingest_skips.push(SkipRow {
                step: "ingest".into(),
                what: what.to_string(),
                doc_id: None,
                reason: reason.to_string(),
            });
        },
    )?;
    funnel.merge(&skipped);
    if let Some(e) = error {
        return Err(e);
    }
    flush(&mut batch, &mut funnel)?;
    bar.finish_and_clear();
    tars.finish()?;
    write_jsonl(&part.path("images.jsonl"), &image_rows)?;
    write_jsonl(&part.path("sentences.jsonl"), &sentence_rows)?;
    write_jsonl(&part.path("fetch.jsonl"), &fetch_rows)?;
    ingest_skips.append(&mut image_skips);
    write_jsonl(&part.path("skips.jsonl"), &ingest_skips)?;
    std::fs::write(part.path("word_counts.tsv"), counts.to_tsv())?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

fn process(
    doc: &Document,
    splitter: &SentenceSplitter,
    fetched: &HashMap<String, FetchResult>,
    cat: Option<&CatFilter>,
    local: &LocalImages,
) -> DocOutput {
    let mut out = DocOutput::default();
    let ingest = out.funnel.step("ingest", "documents");
    ingest.pass();
    if let Some(how) = &doc.repaired {
        ingest.repair(how);
    }
    for (position, src, alt) in doc.images() {
        match image(src, fetched, local) {
            Err((step, reason)) => {
                // Passed every step before the failing one.
                for s in ["read image", "size and aspect", "decode"] {
                    if s == step {
                        out.funnel.step(s, "images").drop(reason);
                        out.skips.push(SkipRow {
                            step: s.to_string(),
                            what: src.to_string(),
                            doc_id: Some(doc.id.clone()),
                            reason: reason.to_string(),
                        });
                        break;
                    }
                    out.funnel.step(s, "images").pass();
                }
            }
            Ok((bytes, ext, w, h, phash)) => {
                for s in ["read image", "size and aspect", "decode"] {
                    out.funnel.step(s, "images").pass();
                }
                out.images.push((
                    ImageRow {
                        id: images::content_id(&bytes),
                        ext: ext.to_string(),
                        shard: String::new(),
                        tar: None,
                        width: w,
                        height: h,
                        phash: format!("{phash:016x}"),
                        doc_id: doc.id.clone(),
                        doc_url: doc.url.clone(),
                        source: doc.source.clone(),
                        position,
                        src: src.to_string(),
                        alt: alt.map(str::to_string),
                    },
                    Bytes::from(bytes),
                ));
            }
        }
    }
    for (position, text) in doc.texts() {
        for (k, sentence) in splitter.sentences(text).into_iter().enumerate() {
            out.funnel.step("segment", "sentences").pass();
            let w = words(sentence);
            let n = w.len();
            let passes_rules = out
                .funnel
                .step("emoji, url, length", "sentences")
                .record(rule_violation(sentence, n));
            let passes = passes_rules
                && cat.is_none_or(|c| {
                    let keep = c.judge(sentence).keep();
                    out.funnel
                        .step(CAT_STEP, "sentences")
                        .record((!keep).then_some("below C1 or no action"))
                });
            if passes {
                out.counts.add(&w);
                out.sentences.push(SentenceRow {
                    text: sentence.to_string(),
                    doc_id: doc.id.clone(),
                    doc_url: doc.url.clone(),
                    source: doc.source.clone(),
                    position,
                    sentence: k,
                    words: n,
                    entropy: None,
                    perplexity: None,
                });
            }
        }
    }
    out
}

type Checked = (Vec<u8>, &'static str, u32, u32, u64);

/// Read, size-check and hash one image; `Err((step, reason))` when dropped.
fn image(
    src: &str,
    fetched: &HashMap<String, FetchResult>,
    local: &LocalImages,
) -> Result<Checked, (&'static str, &'static str)> {
    let read = "read image";
    let bytes = if src.starts_with("http://") || src.starts_with("https://") {
        match fetched.get(src) {
            None => return Err((read, "url (fetch disabled)")),
            Some(Err(reason)) => return Err((read, reason)),
            Some(Ok(bytes)) => bytes.clone(),
        }
    } else if src.starts_with("data:") {
        return Err((read, "data uri"));
    } else {
        let path = Path::new(src.strip_prefix("file://").unwrap_or(src));
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
        {
            return Err((read, "vector image (svg)"));
        }
        local.read(path).map_err(|r| (read, r))?
    };
    let (format, w, h) = images::header(&bytes).map_err(|r| (read, r))?;
    if let Some(r) = images::size_violation(w, h) {
        return Err(("size and aspect", r));
    }
    let img = images::decode(&bytes).map_err(|r| ("decode", r))?;
    Ok((bytes, images::extension(format), w, h, images::phash(&img)))
}

/// The rule for local image paths under `m`: inside the inputs unless allowed, and
/// no larger than a download may be.
pub fn local_images(m: &crate::store::manifest::Manifest) -> LocalImages {
    let max_bytes = m
        .fetch
        .as_ref()
        .map_or(crate::store::manifest::DEFAULT_MAX_IMAGE_BYTES, |f| {
            f.max_bytes
        });
    if m.images_outside_input {
        LocalImages {
            roots: None,
            max_bytes,
        }
    } else {
        LocalImages::inside(&m.inputs, max_bytes)
    }
}
