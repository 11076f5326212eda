//! Reading interleaved documents into `Document`s: OBELICS parquet, MMC4-style JSONL,
//! local HTML pages, and MediaWiki dumps (text only).
//! Inputs are listed as files in a stable order; `--shard i/N` takes every N-th file
//! when there are at least N files, otherwise every N-th document of the stream, so
//! parts never overlap and together cover the input.

mod html;
mod mediawiki;
mod mmc4;
mod nesting;
mod obelics;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

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
    /// Inputs named like documents that are no regular file (a FIFO `*.html` would
    /// block its reader, a device would not end): not read, reported as skipped.
    pub not_regular: Vec<PathBuf>,
}

/// Why a `not_regular` input was skipped.
pub const NOT_REGULAR: &str = "not a regular file";

impl Input {
    /// `paths` are files, directories (searched recursively for the format's files)
    /// or file-name patterns (`pages/gimp-tutorial*.html`, `shards/train-000??.parquet`:
    /// `*` and `?` in the last component, matched in that folder only).
    pub fn list(format: Format, paths: &[PathBuf]) -> Result<Self> {
        let exts: &[&str] = match format {
            Format::Html => &["html", "htm", "xhtml"],
            Format::Mmc4 => &["jsonl", "json"],
            Format::Obelics => &["parquet"],
            Format::Mediawiki => &["xml", "bz2"],
        };
        let mut files = Vec::new();
        let mut not_regular = Vec::new();
        for root in paths {
            if std::fs::metadata(root).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
                not_regular.push(root.clone());
                continue;
            }
            if root.is_file() {
                files.push((
                    root.parent().unwrap_or(Path::new(".")).to_path_buf(),
                    root.clone(),
                ));
                continue;
            }
            if let Some(matches) = pattern_matches(root)? {
                if matches.is_empty() {
                    bail!("input pattern {} matches no file", root.display());
                }
                let folder = root.parent().unwrap_or(Path::new(".")).to_path_buf();
                for f in matches {
                    if f.is_file() {
                        files.push((folder.clone(), f));
                    } else {
                        not_regular.push(f);
                    }
                }
                continue;
            }
            if !root.is_dir() {
                bail!("input {} does not exist", root.display());
            }
            let (found, others) = find_files_and_others(root, exts)?;
            files.extend(found.into_iter().map(|f| (root.clone(), f)));
            not_regular.extend(others);
        }
        if files.is_empty() {
            bail!(
                "no {format:?} files under {paths:?} (looked for *.{})",
                exts.join(", *.")
            );
        }
        Ok(Self {
            format,
            files,
            not_regular,
        })
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
        // Counted once, by the part that owns the first file.
        if shard.owns(0) {
            for p in &self.not_regular {
                on_skip(NOT_REGULAR, &p.display().to_string());
            }
        }
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

/// The entries other than folders (regular files or not) a pattern input names,
/// sorted; `None` when `path` is no pattern (it exists, or its last component has
/// no `*` or `?`).
fn pattern_matches(path: &Path) -> Result<Option<Vec<PathBuf>>> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return Ok(None);
    };
    if path.exists() || !name.contains(['*', '?']) {
        return Ok(None);
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let pattern: Vec<char> = name.chars().collect();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(folder)
        .with_context(|| format!("input pattern {}: reading its folder", path.display()))?
    {
        let entry = entry?;
        let file = entry
            .file_name()
            .to_string_lossy()
            .chars()
            .collect::<Vec<_>>();
        if wildcard_match(&pattern, &file)
            && std::fs::metadata(entry.path()).is_ok_and(|m| !m.is_dir())
        {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(Some(out))
}

/// Shell-style matching of a whole name: `*` any run of characters, `?` one.
fn wildcard_match(pattern: &[char], name: &[char]) -> bool {
    // Iterative with one backtrack point (the last `*`): linear in practice.
    let (mut p, mut n, mut star, mut resume) = (0, 0, None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            resume = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            resume += 1;
            n = resume;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Files under `dir` (recursively) whose extension is one of `exts` (any case), sorted.
/// Directory links are followed once: each real directory is read once, so a link
/// loop (`ln -s .. d/up`) ends and a linked copy of a folder is not read twice.
/// Only regular files are listed (a FIFO named `*.html` would block its reader).
pub fn find_files(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>> {
    Ok(find_files_and_others(dir, exts)?.0)
}

/// `find_files`, and beside them the entries with those extensions that are no
/// regular file (FIFOs, sockets, devices), sorted.
pub fn find_files_and_others(dir: &Path, exts: &[&str]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut out, mut others) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    walk(dir, exts, &mut seen, &mut out, &mut others)?;
    out.sort();
    others.sort();
    Ok((out, others))
}

fn walk(
    dir: &Path,
    exts: &[&str],
    seen: &mut std::collections::HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
    others: &mut Vec<PathBuf>,
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
        let wanted = path
            .extension()
            .is_some_and(|e| exts.contains(&e.to_string_lossy().to_lowercase().as_str()));
        if meta.is_dir() {
            walk(&path, exts, seen, out, others)?;
        } else if wanted && meta.is_file() {
            out.push(path);
        } else if wanted {
            others.push(path);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(p: &str, n: &str) -> bool {
        wildcard_match(
            &p.chars().collect::<Vec<_>>(),
            &n.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn wildcards_match_whole_names() {
        assert!(matches("gimp-tutorial*.html", "gimp-tutorial-quickie.html"));
        assert!(matches("gimp-tutorial*.html", "gimp-tutorial.html"));
        assert!(!matches("gimp-tutorial*.html", "gimp-tutorial.html.bak"));
        assert!(!matches("gimp-tutorial*.html", "x-gimp-tutorial.html"));
        assert!(matches("train-000??.parquet", "train-00012.parquet"));
        assert!(!matches("train-000??.parquet", "train-0001.parquet"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(!matches("*a*b", "xxaxxbxxc"));
        assert!(matches("*", ""));
    }

    #[test]
    fn a_pattern_input_lists_the_matching_files_of_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a-1.html", "a-2.html", "b-1.html", "a-3.txt"] {
            std::fs::write(dir.path().join(f), "<p>x</p>").unwrap();
        }
        std::fs::create_dir(dir.path().join("a-dir.html")).unwrap();
        let fifo = dir.path().join("a-fifo.html");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let input = Input::list(Format::Html, &[dir.path().join("a-*.html")]).unwrap();
        let names: Vec<_> = input
            .files
            .iter()
            .map(|(root, f)| {
                assert_eq!(root, dir.path());
                f.file_name().unwrap().to_string_lossy().into_owned()
            })
            .collect();
        assert_eq!(names, ["a-1.html", "a-2.html"]);
        assert_eq!(input.not_regular, [fifo]);
        let err = Input::list(Format::Html, &[dir.path().join("c-*.html")])
            .err()
            .unwrap();
        assert!(err.to_string().contains("matches no file"), "{err}");
    }
}
