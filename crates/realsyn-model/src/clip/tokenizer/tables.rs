//! Character tables for text cleaning, loaded once from the JSON that
//! `scripts/gen_text_tables.py` dumps from Python's `html` module and from ftfy.
//! Keeping them as data (not hand-copied Rust) is what makes the port exact.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde::Deserialize;

#[derive(Deserialize)]
struct RawTables {
    html5_entities: HashMap<String, String>,
    invalid_charrefs: HashMap<String, String>,
    invalid_codepoints: Vec<u32>,
    ftfy_html_entities: HashMap<String, String>,
    ligatures: HashMap<String, String>,
    width_map: HashMap<String, String>,
    control_chars: Vec<u32>,
    charmap_encodings: Vec<String>,
    codecs: HashMap<String, Vec<Option<String>>>,
    badness_re: String,
    python_whitespace: Vec<u32>,
}

/// A single-byte codec as Python decodes it (256 entries; `None` = undefined byte).
pub struct SingleByteCodec {
    pub name: String,
    pub decode: Vec<Option<char>>,
    pub encode: HashMap<char, u8>,
}

impl SingleByteCodec {
    fn new(name: &str, table: &[Option<String>]) -> Self {
        let decode: Vec<Option<char>> = table
            .iter()
            .map(|c| c.as_ref().and_then(|s| s.chars().next()))
            .collect();
        let mut encode = HashMap::new();
        for (b, c) in decode.iter().enumerate() {
            if let Some(c) = c {
                encode.entry(*c).or_insert(b as u8);
            }
        }
        Self {
            name: name.to_string(),
            decode,
            encode,
        }
    }
}

pub struct TextTables {
    pub html5_entities: HashMap<String, String>,
    /// Longest html5 entity name, to bound the prefix search of `html.unescape`.
    pub html5_max_len: usize,
    pub invalid_charrefs: HashMap<u32, String>,
    pub invalid_codepoints: HashSet<u32>,
    pub ftfy_html_entities: HashMap<String, String>,
    pub ligatures: HashMap<char, String>,
    pub width_map: HashMap<char, String>,
    pub control_chars: HashSet<char>,
    /// ftfy's CHARMAP_ENCODINGS in its order of preference.
    pub charmaps: Vec<SingleByteCodec>,
    pub windows_1252: SingleByteCodec,
    pub badness_re: regex::Regex,
    pub python_whitespace: HashSet<char>,
}

fn char_keyed(map: HashMap<String, String>) -> HashMap<char, String> {
    map.into_iter()
        .filter_map(|(k, v)| {
            let cp: u32 = k.parse().ok()?;
            Some((char::from_u32(cp)?, v))
        })
        .collect()
}

pub static TABLES: LazyLock<TextTables> = LazyLock::new(|| {
    let raw: RawTables = serde_json::from_str(include_str!("../../../data/text_clean_tables.json"))
        .expect("bundled text_clean_tables.json is valid");
    let codec = |name: &str| SingleByteCodec::new(name, &raw.codecs[name]);
    TextTables {
        html5_max_len: raw
            .html5_entities
            .keys()
            .map(|k| k.len())
            .max()
            .unwrap_or(0),
        invalid_charrefs: raw
            .invalid_charrefs
            .iter()
            .map(|(k, v)| (k.parse().expect("numeric key"), v.clone()))
            .collect(),
        invalid_codepoints: raw.invalid_codepoints.iter().copied().collect(),
        ftfy_html_entities: raw.ftfy_html_entities.clone(),
        ligatures: char_keyed(raw.ligatures.clone()),
        width_map: char_keyed(raw.width_map.clone()),
        control_chars: raw
            .control_chars
            .iter()
            .filter_map(|c| char::from_u32(*c))
            .collect(),
        charmaps: raw.charmap_encodings.iter().map(|e| codec(e)).collect(),
        windows_1252: codec("windows-1252"),
        badness_re: regex::Regex::new(&raw.badness_re).expect("ftfy badness regex compiles"),
        python_whitespace: raw
            .python_whitespace
            .iter()
            .filter_map(|c| char::from_u32(*c))
            .collect(),
        html5_entities: raw.html5_entities,
    }
});
