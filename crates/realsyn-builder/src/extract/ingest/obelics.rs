//! OBELICS parquet shards: one document per row, `images` and `texts` lists of the
//! same length (position i is an image URL or a text), `metadata` (a JSON list, one
//! object per position: `src`, `alt_text`, ...) and `general_metadata` (a JSON object:
//! `url`, `warc_filename`, ...). Read with parquet's record API, row by row.

use std::path::Path;

use parquet::file::reader::SerializedFileReader;
use serde::Deserialize;
use serde_json::Value;

use crate::extract::document::{Document, Item};

#[derive(Deserialize)]
struct Row {
    images: Vec<Option<String>>,
    texts: Vec<Option<String>>,
    #[serde(default)]
    metadata: Option<String>,
    #[serde(default)]
    general_metadata: Option<String>,
}

/// Why a file the parquet decoder panicked on is skipped (found by fuzzing: the
/// `parquet` crate asserts on some corrupt pages instead of returning an error).
const DECODER_PANIC: &str = "malformed parquet file (the decoder panicked)";

pub fn read_file(file: &Path, emit: &mut dyn FnMut(Document), on_skip: &mut dyn FnMut(&str, &str)) {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let name = file.display().to_string();
    let opened = catch_unwind(|| {
        std::fs::File::open(file)
            .map_err(|_| ())
            .and_then(|f| SerializedFileReader::new(f).map_err(|_| ()))
    });
    let reader = match opened {
        Ok(Ok(r)) => r,
        Ok(Err(())) => return on_skip("malformed parquet file", &name),
        Err(_) => return on_skip(DECODER_PANIC, &name),
    };
    let mut rows = reader.into_iter();
    for k in 0.. {
        let at = format!("{name}#{k}");
        let row = match catch_unwind(AssertUnwindSafe(|| rows.next())) {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(_) => return on_skip(DECODER_PANIC, &at),
        };
        let row = match catch_unwind(AssertUnwindSafe(|| row.map(|r| r.to_json_value()))) {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => return on_skip("truncated parquet file", &at),
            Err(_) => return on_skip(DECODER_PANIC, &at),
        };
        let row: Row = match serde_json::from_value(row) {
            Ok(r) => r,
            Err(_) => {
                on_skip("malformed row", &at);
                continue;
            }
        };
        if row.images.len() != row.texts.len() {
            on_skip("malformed row", &at);
            continue;
        }
        let meta: Vec<Value> = row
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default();
        let general: Value = row
            .general_metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(Value::Null);
        let mut items = Vec::new();
        for (i, (img, text)) in row.images.into_iter().zip(row.texts).enumerate() {
            match (img, text) {
                (Some(src), _) => items.push(Item::Image {
                    src,
                    alt: meta
                        .get(i)
                        .and_then(|m| m.get("alt_text"))
                        .and_then(Value::as_str)
                        .filter(|a| !a.trim().is_empty())
                        .map(str::to_string),
                }),
                (None, Some(text)) => items.push(Item::Text { text }),
                (None, None) => {}
            }
        }
        let url = general
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_string);
        emit(Document {
            id: url.clone().unwrap_or_else(|| {
                format!(
                    "{}#{k}",
                    file.file_name().unwrap_or_default().to_string_lossy()
                )
            }),
            url,
            source: format!("obelics:{name}"),
            items,
            repaired: None,
        });
    }
}
