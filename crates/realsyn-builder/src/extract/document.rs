//! The normalised interleaved document every ingest format is read into: an ordered
//! list of text and image items, plus where it came from.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable id within its source (a relative path, a URL, `file.parquet#row`).
    pub id: String,
    /// The page's URL where known (`file://` for local pages).
    pub url: Option<String>,
    /// Ingest format and input file, e.g. `html:/usr/share/gimp/2.0/help/en`.
    pub source: String,
    pub items: Vec<Item>,
    /// How the reader repaired the document's text, if it had to (e.g. a Latin-1
    /// page decoded by its declared charset); counted in the funnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Item {
    Text {
        text: String,
    },
    Image {
        /// A URL (`http(s)://`, `file://`) or a local path, resolved against the page.
        src: String,
        alt: Option<String>,
    },
}

impl Document {
    pub fn images(&self) -> impl Iterator<Item = (usize, &str, Option<&str>)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| match it {
                Item::Image { src, alt } => Some((i, src.as_str(), alt.as_deref())),
                Item::Text { .. } => None,
            })
    }

    pub fn texts(&self) -> impl Iterator<Item = (usize, &str)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| match it {
                Item::Text { text } => Some((i, text.as_str())),
                Item::Image { .. } => None,
            })
    }
}
