//! Reading interleaved documents into `Document`s: OBELICS parquet, MMC4-style JSONL,
//! local HTML pages, and MediaWiki dumps (text only).
//! Inputs are listed as files in a stable order; `--shard i/N` takes every N-th file
//! when there are at least N files, otherwise every N-th document of the stream, so
//! parts never overlap and together cover the input.

mod html;
mod mediawiki;
mod mmc4;
mod obelics;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::extract::document::Document;
use crate::store::shard::ShardSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Local HTML pages (`*.html`, `*.htm`, searched recursively).
    Html,
    /// MMC4-style JSONL: `text_list`, `image_info[{raw_url, image_name, matched_text_index}]`.
    Mmc4,
    /// OBELICS parquet: `images`, `texts`, `metadata`, `general_metadata`.
    Obelics,
    /// MediaWiki XML dumps (`.xml`, `.xml.bz2`): text-only documents.
    Mediawiki,
}

impl std::str::FromStr for Format {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "html" => Ok(Self::Html),
            "mmc4" | "jsonl" => Ok(Self::Mmc4),
            "obelics" | "parquet" => Ok(Self::Obelics),
            "mediawiki" | "wikipedia" => Ok(Self::Mediawiki),
            _ => bail!("unknown input format {s:?}: html, mmc4, obelics or mediawiki"),
        }
    }
}

/// The files of an input, in order.
pub struct Input {
    pub format: Format,
    pub files: Vec<(PathBuf, PathBuf)>,
}

impl Input {
    /// `paths` are files or directories (searched recursively for the format's files).
    pub fn list(format: Format, paths: &[PathBuf]) -> Result<Self> {
        let exts: &[&str] = match format {
            Format::Html => &["html", "htm", "xhtml"],
            Format::Mmc4 => &["jsonl", "json"],
            Format::Obelics => &["parquet"],
            Format::Mediawiki => &["xml", "bz2"],
        };
        let mut files = Vec::new();
        for root in paths {
            if root.is_file() {
                files.push((
                    root.parent().unwrap_or(Path::new(".")).to_path_buf(),
                    root.clone(),
                ));
                continue;
            }
            if !root.is_dir() {
                bail!("input {} does not exist", root.display());
            }
            files.extend(
                find_files(root, exts)?
                    .into_iter()
                    .map(|f| (root.clone(), f)),
            );
        }
        if files.is_empty() {
            bail!(
                "no {format:?} files under {paths:?} (looked for *.{})",
                exts.join(", *.")
            );
        }
        Ok(Self { format, files })
    }

    /// Documents of part `shard`, in input order. `on_skip` gets the reason for each
    /// document or file that could not be read.
    pub fn documents(
        &self,
        shard: ShardSpec,
        emit: &mut dyn FnMut(Document),
        on_skip: &mut dyn FnMut(&str, &str),
    ) -> Result<()> {
        let by_file = self.files.len() >= shard.count;
        let mut ordinal = 0usize;
        for (k, (root, file)) in self.files.iter().enumerate() {
            if by_file && !shard.owns(k) {
                continue;
            }
            let mut take = |d: Document| {
                if by_file || shard.owns(ordinal) {
                    emit(d);
                }
                ordinal += 1;
            };
            match self.format {
                Format::Html => match html::read_page(root, file) {
                    Ok(d) => take(d),
                    Err(reason) => {
                        if by_file || shard.owns(ordinal) {
                            on_skip(reason, &file.display().to_string());
                        }
                        ordinal += 1;
                    }
                },
                Format::Mmc4 => mmc4::read_file(file, &mut take, on_skip)?,
                Format::Obelics => obelics::read_file(file, &mut take, on_skip),
                Format::Mediawiki => mediawiki::read_file(file, &mut take, on_skip),
            }
        }
        Ok(())
    }
}

/// Files under `dir` (recursively) whose extension is one of `exts` (any case), sorted.
/// Directory links are followed once: each real directory is read once, so a link
/// loop (`ln -s .. d/up`) ends and a linked copy of a folder is not read twice.
/// Only regular files are listed (a FIFO named `*.html` would block its reader).
pub fn find_files(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    walk(dir, exts, &mut seen, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(
    dir: &Path,
    exts: &[&str],
    seen: &mut std::collections::HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<()> {
    let real = std::fs::canonicalize(dir)?;
    if !seen.insert(real) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // Follows links: `metadata`, not `symlink_metadata`; a dangling link is skipped.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, exts, seen, out)?;
        } else if meta.is_file()
            && path
                .extension()
                .is_some_and(|e| exts.contains(&e.to_string_lossy().to_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// An image reference made absolute: URLs and `data:` kept, `file://` and relative
/// paths resolved against `base` (the page's folder).
pub fn resolve_src(src: &str, base: &Path) -> String {
    let src = src.trim();
    if src.starts_with("http://") || src.starts_with("https://") || src.starts_with("data:") {
        return src.to_string();
    }
    let path = src.strip_prefix("file://").unwrap_or(src);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let joined = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        base.join(path)
    };
    normalise(&joined).display().to_string()
}

/// `a/b/../c` -> `a/c` without touching the file system.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}
