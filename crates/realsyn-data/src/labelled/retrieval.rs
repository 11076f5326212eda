//! Retrieval sets in Karpathy's split files (`dataset_flickr30k.json`,
//! `dataset_coco.json`): `{"images": [{"filename", "filepath"?, "split",
//! "sentences": [{"raw"}]}]}`. The image of an entry is IMAGES/filepath/filename.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{Kind, LabelledDataset, Source};

#[derive(serde::Deserialize)]
struct Karpathy {
    images: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    filename: String,
    #[serde(default)]
    filepath: Option<String>,
    split: String,
    sentences: Vec<Sentence>,
}

#[derive(serde::Deserialize)]
struct Sentence {
    raw: String,
}

pub fn open_karpathy(
    root: &Path,
    split: &str,
    captions: &str,
    images: &str,
) -> Result<LabelledDataset> {
    let path = root.join(captions);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let data: Karpathy = serde_json::from_str(&text)
        .with_context(|| format!("parsing {} (Karpathy split format)", path.display()))?;
    let image_root = root.join(images);
    let items: Vec<_> = data
        .images
        .into_iter()
        .filter(|e| e.split == split)
        .map(|e| {
            let dir = match &e.filepath {
                Some(sub) => image_root.join(sub),
                None => image_root.clone(),
            };
            let captions = e
                .sentences
                .into_iter()
                .map(|s| s.raw.trim().to_string())
                .collect();
            (dir.join(e.filename), 0, captions)
        })
        .collect();
    if items.is_empty() {
        bail!("{} has no image in split {split:?}", path.display());
    }
    Ok(LabelledDataset {
        root: root.to_path_buf(),
        kind: Kind::Retrieval,
        classnames: Vec::new(),
        templates: Vec::new(),
        source: Source::Items(items),
    })
}
