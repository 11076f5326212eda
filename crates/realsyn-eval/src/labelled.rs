//! Labelled image sets in CLIP_benchmark's WebDataset layout:
//! `ROOT/classnames.txt` (one class per line), `ROOT/zeroshot_classification_templates.txt`
//! (one template per line, `{c}` for the class name), `ROOT/test/*.tar` whose samples
//! hold an image (`webp`/`png`/`jpg`) and `cls` (the class index as text).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use realsyn_data::wds::{SkipCounter, read_shard};
use realsyn_data::{EvalTransform, decode_image};

pub struct LabelledDataset {
    pub root: PathBuf,
    pub classnames: Vec<String>,
    pub templates: Vec<String>,
    pub shards: Vec<PathBuf>,
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

impl LabelledDataset {
    pub fn open(root: &Path, split: &str) -> Result<Self> {
        let classnames = read_lines(&root.join("classnames.txt"))?;
        let templates = read_lines(&root.join("zeroshot_classification_templates.txt"))?;
        if templates.iter().any(|t| !t.contains("{c}")) {
            bail!("every zero-shot template must contain {{c}} (the class name)");
        }
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
        Ok(Self {
            root: root.to_path_buf(),
            classnames,
            templates,
            shards,
        })
    }

    /// Stream `(pixels, label)` batches of up to `batch` samples, decoded on the
    /// rayon pool. Bad samples are skipped and counted in `skips`.
    pub fn batches(
        &self,
        transform: EvalTransform,
        batch: usize,
        skips: &SkipCounter,
    ) -> impl Iterator<Item = (Vec<Vec<f32>>, Vec<usize>)> + use<'_> {
        let n_classes = self.classnames.len();
        let skips = skips.clone();
        let mut samples = self.shards.clone().into_iter().flat_map({
            let skips = skips.clone();
            move |s| read_shard(&s, &skips)
        });
        std::iter::from_fn(move || {
            let chunk: Vec<_> = samples.by_ref().take(batch).collect();
            if chunk.is_empty() {
                return None;
            }
            let decoded: Vec<Result<(Vec<f32>, usize), &'static str>> = chunk
                .par_iter()
                .map(|s| {
                    let cls: usize = s
                        .get("cls")
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|t| t.trim().parse().ok())
                        .ok_or("no class label")?;
                    if cls >= n_classes {
                        return Err("class label out of range");
                    }
                    let bytes = s
                        .first_of(&["webp", "png", "jpg", "jpeg"])
                        .ok_or("no image")?;
                    let img = decode_image(bytes).map_err(|_| "corrupt image")?;
                    Ok((transform.apply(&img).map_err(|_| "corrupt image")?, cls))
                })
                .collect();
            let mut px = Vec::with_capacity(chunk.len());
            let mut labels = Vec::with_capacity(chunk.len());
            for (d, s) in decoded.into_iter().zip(&chunk) {
                match d {
                    Ok((p, l)) => {
                        px.push(p);
                        labels.push(l);
                    }
                    Err(reason) => skips.skip(reason, &s.describe()),
                }
            }
            Some((px, labels))
        })
    }
}
