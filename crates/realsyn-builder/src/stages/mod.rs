//! The builder's stages, listed once in `list::STAGES` (each a type implementing
//! `list::Stage`). Each reads the previous stage's parts under the store
//! directory, writes its own parts (`STORE/STAGE/part-i-of-N/`) atomically, and
//! skips parts that are already complete.
//!
//! - `extract`: documents -> images (size/aspect filtered, hashed, stored
//!   content-addressed in tar shards) and sentences (Punkt, emoji/URL, length), with
//!   word counts for the entropy filter.
//! - `filter_text`: entropy >= 0.3 with corpus-wide word probabilities.
//! - `filter_text` also runs GPT-2 perplexity in [30, 200] when a model is given.
//! - `dedup_text`: near-exact sentence dedup, partitioned by key.
//! - `dedup_text_semantic`: sentence embeddings + union-find (with a text encoder).
//! - `dedup_images`: perceptual dedup with union-find over the whole corpus.
//! - `cluster_text`: sentence embeddings of the pairing dual encoder, k-means, and
//!   the sentences grouped by cluster (paper §3.2, text semantic clustering).
//! - `retrieve`: per image, the 3 nearest sentences of its nearest text clusters
//!   (paper §3.2, hierarchical retrieval).
//! - `generate`: per image a caption, open-set tags and an LLM-merged synthetic text
//!   (paper §3.2, image semantic augmented generation).
//! - `balance`: image-text cosine band and per-image-cluster caps (paper §3.3,
//!   semantic balance sampling), every cap's variant and the random baseline.
//! - `write`: the dataset as WebDataset shards (img2dataset's layout).
//! - `pair_images` (not in the list): images without documents paired with a
//!   finished store's sentences (paper §4, pure images).

pub mod balance;
pub mod build_recipe;
pub mod cluster_text;
pub mod dedup_images;
pub mod dedup_text;
pub mod dedup_text_semantic;
pub mod extract;
pub mod filter_text;
pub mod generate;
pub mod list;
pub mod pair_images;
pub mod pipeline;
pub mod retrieve;
pub mod write;

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::funnel::Funnel;

pub const EXTRACT: &str = "extract";
pub const FILTER_TEXT: &str = "filter-text";
pub const DEDUP_TEXT: &str = "dedup-text";
pub const DEDUP_TEXT_SEMANTIC: &str = "dedup-text-semantic";
pub const DEDUP_IMAGES: &str = "dedup-images";
pub const CLUSTER_TEXT: &str = "cluster-text";
pub const RETRIEVE: &str = "retrieve";
pub const GENERATE: &str = "generate";
pub const BALANCE: &str = "balance";
pub const WRITE: &str = "write";

/// Rows as JSON lines into a file (inside a part's temporary directory).
pub fn write_jsonl<T: Serialize>(path: &Path, rows: impl IntoIterator<Item = T>) -> Result<u64> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut n = 0;
    for r in rows {
        serde_json::to_writer(&mut w, &r)?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

/// Rows as JSON lines, one at a time (for outputs too large to collect first).
pub struct JsonlWriter {
    w: std::io::BufWriter<std::fs::File>,
}

impl JsonlWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            w: std::io::BufWriter::new(file),
        })
    }

    pub fn write<T: Serialize>(&mut self, row: &T) -> Result<()> {
        serde_json::to_writer(&mut self.w, row)?;
        self.w.write_all(b"\n")?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.w.flush()?;
        Ok(())
    }
}

/// The rows of a JSON-lines file, pulled one at a time; a file that cannot be opened
/// is one error, a line that is not a row names its file and line.
pub fn iter_jsonl<T: DeserializeOwned>(path: &Path) -> impl Iterator<Item = Result<T>> + use<T> {
    let path = path.to_path_buf();
    let (open_error, lines) = match std::fs::File::open(&path) {
        Ok(file) => (
            None,
            Some(std::io::BufReader::new(file).lines().enumerate()),
        ),
        Err(e) => (
            Some(Err(
                anyhow::Error::new(e).context(format!("opening {}", path.display()))
            )),
            None,
        ),
    };
    open_error
        .into_iter()
        .chain(lines.into_iter().flatten().map(move |(i, line)| {
            serde_json::from_str(&line?)
                .with_context(|| format!("{}:{}: not a row of this stage", path.display(), i + 1))
        }))
}

/// Stream the rows of a JSON-lines file.
pub fn read_jsonl<T: DeserializeOwned>(
    path: &Path,
    mut f: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    for row in iter_jsonl(path) {
        f(row?)?;
    }
    Ok(())
}

/// The rows of `file` in every part, in corpus order (part, then line), pulled one at
/// a time (for consumers that take an iterator, e.g. `encode_in_batches`).
pub fn iter_parts<T: DeserializeOwned>(
    parts: &[std::path::PathBuf],
    file: &str,
) -> impl Iterator<Item = Result<T>> {
    parts.iter().flat_map(move |p| iter_jsonl(&p.join(file)))
}

/// Stream the rows of `file` in every part, in corpus order (part, then line), with
/// their running index.
pub fn read_parts<T: DeserializeOwned>(
    parts: &[std::path::PathBuf],
    file: &str,
    mut f: impl FnMut(usize, T) -> Result<()>,
) -> Result<()> {
    for (i, row) in iter_parts(parts, file).enumerate() {
        f(i, row?)?;
    }
    Ok(())
}

/// The tar shards of an image folder of the store (an extract part's `images/`, the
/// folder an image row's `shard` names), in name order.
pub fn tars_in(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut tars: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    tars.sort();
    Ok(tars)
}

pub fn write_funnel(path: &Path, funnel: &Funnel) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(funnel)?)?;
    Ok(())
}

pub fn read_funnel(part: &Path) -> Result<Funnel> {
    let p = part.join("funnel.json");
    serde_json::from_slice(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
        .with_context(|| format!("{} is not a funnel", p.display()))
}

/// The summed funnel of every finished part of the stages present under `store`, in
/// pipeline order.
pub fn store_funnel(store: &Path) -> Result<Funnel> {
    let mut total = Funnel::default();
    for stage in list::STAGES {
        let dir = store.join(stage.name());
        if !dir.exists() {
            continue;
        }
        for part in crate::shard::complete_parts(&dir)? {
            total.merge(&read_funnel(&part)?);
        }
    }
    Ok(total)
}
