//! The store: what every stage reads and writes, apart from any paper step.
//!
//! - `manifest`: the build's settings (`Manifest`: the store's pin and the build
//!   recipe) and the loaded models a run hands its stages.
//! - `recipe`: the build recipe as TOML (`--recipe`, `--set`, `recipe.toml`).
//! - `shard`: `--shard i/N` parts written atomically (`STORE/STAGE/part-i-of-N/`).
//! - `funnel`: drop accounting, per part and summed for the store.
//! - here: the stage folder names, JSON-lines rows, part listings.
//!
//! The stages themselves live by paper phase (`extract`, `filter`, `dedup`,
//! `cluster`, `retrieve`, `generate`, `balance`, `write`), listed once in
//! `crate::pipeline::STAGES`.

pub mod funnel;
pub mod manifest;
pub mod recipe;
pub mod shard;

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::funnel::Funnel;

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
