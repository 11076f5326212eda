//! Which texts of a sample are candidates for its caption.
//!
//! A key is either a file extension (`txt`: the whole `KEY.txt`) or
//! `EXT.FIELD` (a field of `KEY.EXT` parsed as JSON: a string, or a list of
//! strings that all become candidates). The default reads the released RealSyn
//! layout as img2dataset writes it: `txt` holds text1, and `text2`, `text3` and
//! `syn_text` sit inside `KEY.json`; a `texts` list in the JSON is also read.
//! The paper's ablations (1/3/5 realistic texts, with or without the synthetic
//! one) are a change of this list.

use anyhow::{Result, bail};
use serde_json::Value;

use crate::wds::RawSample;

pub const DEFAULT_TEXT_KEYS: [&str; 5] = [
    "txt",
    "json.text2",
    "json.text3",
    "json.syn_text",
    "json.texts",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum TextKey {
    File(String),
    JsonField { ext: String, field: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextKeys {
    keys: Vec<TextKey>,
}

impl Default for TextKeys {
    fn default() -> Self {
        Self::parse(&DEFAULT_TEXT_KEYS).expect("default keys parse")
    }
}

impl TextKeys {
    pub fn parse<S: AsRef<str>>(keys: &[S]) -> Result<Self> {
        if keys.is_empty() {
            bail!("at least one text key is needed (e.g. \"txt\")");
        }
        let keys = keys
            .iter()
            .map(|k| {
                let k = k.as_ref().trim();
                match k.split_once('.') {
                    _ if k.is_empty() => bail!("empty text key"),
                    Some((ext, field)) if !ext.is_empty() && !field.is_empty() => {
                        Ok(TextKey::JsonField {
                            ext: ext.to_ascii_lowercase(),
                            field: field.to_string(),
                        })
                    }
                    Some(_) => bail!("text key {k:?} must be EXT or EXT.FIELD"),
                    None => Ok(TextKey::File(k.to_ascii_lowercase())),
                }
            })
            .collect::<Result<_>>()?;
        Ok(Self { keys })
    }

    /// Every non-empty candidate text, in key order. Undecodable members give none.
    pub fn candidates(&self, sample: &RawSample) -> Vec<String> {
        let mut out = Vec::new();
        let mut parsed: Vec<(&str, Option<Value>)> = Vec::new();
        for key in &self.keys {
            match key {
                TextKey::File(ext) => {
                    if let Some(s) = sample.get(ext).and_then(|b| std::str::from_utf8(b).ok()) {
                        push_text(&mut out, s);
                    }
                }
                TextKey::JsonField { ext, field } => {
                    let idx = match parsed.iter().position(|(e, _)| *e == ext.as_str()) {
                        Some(i) => i,
                        None => {
                            let v = sample.get(ext).and_then(|b| serde_json::from_slice(b).ok());
                            parsed.push((ext.as_str(), v));
                            parsed.len() - 1
                        }
                    };
                    match parsed[idx].1.as_ref().and_then(|v| v.get(field.as_str())) {
                        Some(Value::String(s)) => push_text(&mut out, s),
                        Some(Value::Array(items)) => {
                            for s in items.iter().filter_map(Value::as_str) {
                                push_text(&mut out, s);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        out
    }
}

fn push_text(out: &mut Vec<String>, s: &str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::BTreeMap;

    fn sample(fields: &[(&str, &str)]) -> RawSample {
        RawSample {
            key: "000000000".into(),
            shard: "s.tar".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), Bytes::from(v.to_string())))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn realsyn_layout_gives_four_texts() {
        let s = sample(&[
            ("txt", "text one"),
            (
                "json",
                r#"{"text2": "text two", "text3": "text three", "syn_text": "synthetic", "url": "http://x"}"#,
            ),
        ]);
        assert_eq!(
            TextKeys::default().candidates(&s),
            ["text one", "text two", "text three", "synthetic"]
        );
        let real_only = TextKeys::parse(&["txt", "json.text2", "json.text3"]).unwrap();
        assert_eq!(real_only.candidates(&s).len(), 3);
    }

    #[test]
    fn json_lists_blank_texts_and_bad_json() {
        let s = sample(&[("txt", "  "), ("json", r#"{"texts": ["a", "", "b", 3]}"#)]);
        assert_eq!(TextKeys::default().candidates(&s), ["a", "b"]);
        let bad = sample(&[("json", "{not json")]);
        assert!(TextKeys::default().candidates(&bad).is_empty());
        assert!(TextKeys::parse(&["json."]).is_err());
        assert!(TextKeys::parse::<&str>(&[]).is_err());
    }
}
