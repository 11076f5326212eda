//! MMC4-style JSONL: one document per line, `{"url", "text_list": [...],
//! "image_info": [{"raw_url", "image_name", "matched_text_index"}]}`. Each image is
//! placed after the sentence it was matched to; `image_name` is used when that file
//! exists beside the JSONL (MMC4's image-shard layout), `raw_url` otherwise.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::resolve_src;
use crate::document::{Document, Item};

#[derive(Deserialize)]
struct Mmc4Doc {
    url: Option<String>,
    text_list: Vec<String>,
    #[serde(default)]
    image_info: Vec<ImageInfo>,
}

#[derive(Deserialize)]
struct ImageInfo {
    raw_url: Option<String>,
    image_name: Option<String>,
    matched_text_index: Option<usize>,
}

pub fn read_file(
    file: &Path,
    emit: &mut dyn FnMut(Document),
    on_skip: &mut dyn FnMut(&str, &str),
) -> Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut reader = std::io::BufReader::new(f);
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        n += 1;
        let at = format!("{}:{n}", file.display());
        let Ok(text) = std::str::from_utf8(&line) else {
            on_skip("bad utf-8", &at);
            continue;
        };
        // A byte-order mark (editors on Windows write one) is not part of the JSON.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            continue;
        }
        let doc: Mmc4Doc = match serde_json::from_str(text) {
            Ok(d) => d,
            Err(_) => {
                on_skip("malformed json", &at);
                continue;
            }
        };
        let mut items = Vec::new();
        for (t, sentence) in doc.text_list.iter().enumerate() {
            items.push(Item::Text {
                text: sentence.clone(),
            });
            for img in doc
                .image_info
                .iter()
                .filter(|i| i.matched_text_index == Some(t))
            {
                let local = img
                    .image_name
                    .as_deref()
                    .map(|n| base.join(n))
                    .filter(|p| p.is_file());
                let src = match (local, &img.raw_url) {
                    (Some(p), _) => p.display().to_string(),
                    (None, Some(u)) => resolve_src(u, base),
                    (None, None) => continue,
                };
                items.push(Item::Image { src, alt: None });
            }
        }
        emit(Document {
            id: format!(
                "{}:{n}",
                file.file_name().unwrap_or_default().to_string_lossy()
            ),
            url: doc.url,
            source: format!("mmc4:{}", file.display()),
            items,
        });
    }
    Ok(())
}
