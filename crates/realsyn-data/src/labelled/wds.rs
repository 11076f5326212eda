//! CLIP_benchmark's WebDataset exports: `ROOT/SPLIT/*.tar`, `ROOT/classnames.txt`,
//! `ROOT/zeroshot_classification_templates.txt`. Classification samples hold an image
//! (`webp`/`png`/`jpg`) and `cls`; retrieval samples an image and `txt`, one caption
//! per line.

use std::path::{Path, PathBuf};

use crate::wds::{RawSample, SkipCounter};
use anyhow::{Context, Result, bail};

use super::{ImageRef, Item, Kind, LabelledDataset, Source, read_lines};

pub fn open(root: &Path, split: &str, kind: Kind) -> Result<LabelledDataset> {
    let classnames = match kind {
        Kind::Classification => read_lines(&root.join("classnames.txt"))?,
        Kind::Retrieval => Vec::new(),
    };
    let templates_file = root.join("zeroshot_classification_templates.txt");
    let templates = if templates_file.exists() {
        read_lines(&templates_file)?
    } else {
        Vec::new()
    };
    let split_dir = root.join(split);
    let mut shards: Vec<PathBuf> = std::fs::read_dir(&split_dir)
        .with_context(|| format!("reading {}", split_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    shards.sort();
    if shards.is_empty() {
        bail!("no .tar shards in {}", split_dir.display());
    }
    Ok(LabelledDataset {
        root: root.to_path_buf(),
        kind,
        classnames,
        templates,
        source: Source::Shards(shards),
    })
}

/// One shard sample as an [`Item`], or `None` (counted) when it lacks its fields.
pub fn item(s: RawSample, kind: Kind, skips: &SkipCounter) -> Option<Item> {
    let Some(image) = s.first_of(crate::image::IMAGE_EXTENSIONS).cloned() else {
        skips.skip("no image", &s.describe());
        return None;
    };
    let text = |ext: &str| {
        s.get(ext)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
    };
    let (label, captions) = match kind {
        Kind::Classification => {
            let Some(label) = text("cls").and_then(|t| t.trim().parse().ok()) else {
                skips.skip("no class label", &s.describe());
                return None;
            };
            (label, Vec::new())
        }
        Kind::Retrieval => {
            let captions: Vec<String> = text("txt")
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            (0, captions)
        }
    };
    Some(Item {
        image: ImageRef::Encoded(image),
        label,
        captions,
        id: s.describe(),
    })
}
