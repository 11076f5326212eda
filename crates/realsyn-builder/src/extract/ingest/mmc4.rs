//! MMC4-style JSONL: one document per line, `{"url", "text_list": [...],
//! "image_info": [{"raw_url", "image_name", "matched_text_index"}]}`. Each image is
//! placed after the sentence it was matched to; `image_name` is used when that file
//! exists beside the JSONL (MMC4's image-shard layout), `raw_url` otherwise.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::resolve_src;
use crate::extract::document::{Document, Item};

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
        // An image sits after the sentence it is matched to; one whose index is
        // missing or past the last sentence goes after the last (or alone, in a
        // document without text), so it is still read and counted by the image
        // steps rather than lost.
        let last = doc.text_list.len().saturating_sub(1);
        let slot = |i: &ImageInfo| i.matched_text_index.filter(|&t| t <= last).unwrap_or(last);
        let image_item = |img: &ImageInfo| {
            let local = img
                .image_name
                .as_deref()
                .map(|n| base.join(n))
                .filter(|p| p.is_file());
            let src = match (local, &img.raw_url) {
                (Some(p), _) => p.display().to_string(),
                (None, Some(u)) => resolve_src(u, base),
                (None, None) => return None,
            };
            Some(Item::Image { src, alt: None })
        };
        let mut items = Vec::new();
        for (t, sentence) in doc.text_list.iter().enumerate() {
            items.push(Item::Text {
                text: sentence.clone(),
            });
            items.extend(
                doc.image_info
                    .iter()
                    .filter(|i| slot(i) == t)
                    .filter_map(image_item),
            );
        }
        if doc.text_list.is_empty() {
            items.extend(doc.image_info.iter().filter_map(image_item));
        }
        emit(Document {
            id: format!(
                "{}:{n}",
                file.file_name().unwrap_or_default().to_string_lossy()
            ),
            url: doc.url,
            source: format!("mmc4:{}", file.display()),
            items,
            repaired: None,
        });
    }
    Ok(())
}
