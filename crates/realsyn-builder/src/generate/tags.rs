//! The open-set tagger (paper §3.2: RAM++ over its 4,000 tags + 4,000 mined from the
//! real sentences). RAM++ queries its tags with CLIP text embeddings; here a CLIP
//! dual encoder of the model library scores them directly: each tag is embedded once
//! as the mean of its prompt-template embeddings (as a zero-shot classifier embeds a
//! class), and an image keeps its `top_k` tags whose cosine is at least
//! `min_cosine`.
//!
//! The vocabulary is RAM's 4,585 tags (`data/ram/`, Apache-2.0) plus the nouns the
//! CAT tagger finds most often in the kept sentences.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use realsyn_io::Embeddings;

use crate::embed::TextEmbedder;
use crate::filter::cat::CatFilter;

/// RAM's tag list (Recognize Anything, Apache-2.0).
pub const RAM_TAGS: &str = include_str!("../../data/ram/ram_tag_list.txt");

/// Prompt templates each tag is embedded with (from CLIP's ImageNet templates).
pub const TAG_TEMPLATES: [&str; 4] = [
    "a photo of a {}.",
    "a photo of the {}.",
    "a picture of a {}.",
    "an image of {}.",
];

/// Texts embedded per batch.
const TEXT_BATCH: usize = 256;

pub fn ram_tags() -> Vec<String> {
    RAM_TAGS
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The `n` nouns found most often in `sentences` that are not already in `known`
/// (ties broken alphabetically), each seen at least twice.
pub fn mine_tags<'s>(
    sentences: impl Iterator<Item = &'s str>,
    cat: &CatFilter,
    n: usize,
    known: &HashSet<String>,
) -> Vec<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for s in sentences {
        for noun in cat.nouns(s) {
            if noun.len() >= 3 {
                *counts.entry(noun).or_default() += 1;
            }
        }
    }
    let mut ranked: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(w, c)| *c >= 2 && !known.contains(w))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.into_iter().take(n).map(|(w, _)| w).collect()
}

/// Tags and their unit-norm embeddings.
pub struct TagIndex {
    pub tags: Vec<String>,
    pub embeddings: Embeddings,
}

impl TagIndex {
    /// Embed every tag with every template; a tag's embedding is the normalised mean.
    pub fn build(tags: Vec<String>, embedder: &mut dyn TextEmbedder) -> Result<Self> {
        if tags.is_empty() {
            bail!("the tag vocabulary is empty");
        }
        let prompts: Vec<String> = tags
            .iter()
            .flat_map(|t| TAG_TEMPLATES.iter().map(move |p| p.replace("{}", t)))
            .collect();
        let bar = realsyn_data::progress::bar(prompts.len() as u64, "embed tags");
        let mut all = Vec::new();
        let mut width = 0;
        for chunk in prompts.chunks(TEXT_BATCH) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let e = embedder.embed(&refs).with_context(|| embedder.name())?;
            width = e.width();
            all.extend_from_slice(e.as_slice());
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let k = TAG_TEMPLATES.len();
        let mut out = Vec::with_capacity(tags.len() * width);
        for t in 0..tags.len() {
            let mut mean = vec![0f32; width];
            for p in 0..k {
                let row = &all[(t * k + p) * width..(t * k + p + 1) * width];
                for (m, x) in mean.iter_mut().zip(row) {
                    *m += x;
                }
            }
            let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            out.extend(mean.iter().map(|x| x / norm));
        }
        Ok(Self {
            tags,
            embeddings: Embeddings::new(out, width)?,
        })
    }

    /// Save as `tags.txt` + `tag_embeddings.npy` in `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        self.embeddings.write_npy(&dir.join("tag_embeddings.npy"))?;
        realsyn_io::fs::write_atomic(
            &dir.join("tags.txt"),
            (self.tags.join("\n") + "\n").as_bytes(),
        )
    }

    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let (t, e) = (dir.join("tags.txt"), dir.join("tag_embeddings.npy"));
        if !t.exists() || !e.exists() {
            return Ok(None);
        }
        let tags: Vec<String> = std::fs::read_to_string(&t)?
            .lines()
            .map(str::to_string)
            .collect();
        let embeddings = Embeddings::read_npy(&e)?;
        if embeddings.rows() != tags.len() {
            bail!(
                "{}: {} tags but {} embeddings",
                dir.display(),
                tags.len(),
                embeddings.rows()
            );
        }
        Ok(Some(Self { tags, embeddings }))
    }

    /// The tags of one unit-norm image embedding: at most `top_k`, each with cosine
    /// >= `min_cosine`, best first (ties by tag order).
    pub fn top(&self, image: &[f32], top_k: usize, min_cosine: f32) -> Vec<(String, f32)> {
        let mut scored: Vec<(usize, f32)> = (0..self.tags.len())
            .map(|i| {
                let row = self.embeddings.row(i);
                (i, row.iter().zip(image).map(|(a, b)| a * b).sum::<f32>())
            })
            .filter(|(_, s)| *s >= min_cosine)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
            .into_iter()
            .take(top_k)
            .map(|(i, s)| (self.tags[i].clone(), s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_list_is_vendored_whole() {
        let tags = ram_tags();
        assert_eq!(tags.len(), 4585);
        assert_eq!(tags[0], "3D CG rendering");
    }

    #[test]
    fn top_tags_respect_k_and_threshold() {
        let idx = TagIndex {
            tags: vec!["a".into(), "b".into(), "c".into()],
            embeddings: Embeddings::new(vec![1.0, 0.0, 0.6, 0.8, 0.0, 1.0], 2).unwrap(),
        };
        let top = idx.top(&[1.0, 0.0], 2, 0.5);
        assert_eq!(top, vec![("a".to_string(), 1.0), ("b".to_string(), 0.6)]);
        assert_eq!(idx.top(&[1.0, 0.0], 5, 0.7).len(), 1);
    }
}
