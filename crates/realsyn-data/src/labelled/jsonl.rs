//! Image lists as JSON lines, `ROOT/SPLIT.jsonl`, one `{"img": PATH, "label": INT}` per
//! line, PATH relative to ROOT: the Hateful Memes release (`train.jsonl`,
//! `dev_seen.jsonl`, ...) and a simple format for users' own sets. Class names come
//! from `ROOT/classnames.txt`, else from the benchmark registry.

use std::path::Path;

use anyhow::{Context, Result};

use super::{LabelledDataset, read_lines};

#[derive(serde::Deserialize)]
struct Row {
    img: String,
    label: usize,
}

pub fn open(root: &Path, split: &str) -> Result<LabelledDataset> {
    let path = root.join(format!("{split}.jsonl"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut items = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row: Row = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: expected {{\"img\": ..., \"label\": ...}}",
                path.display(),
                i + 1
            )
        })?;
        items.push((root.join(row.img), row.label, Vec::new()));
    }
    let names = root.join("classnames.txt");
    let classnames = if names.exists() {
        read_lines(&names)?
    } else {
        Vec::new()
    };
    Ok(LabelledDataset::listed(root, classnames, items))
}
