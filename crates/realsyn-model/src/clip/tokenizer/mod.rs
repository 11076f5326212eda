//! The CLIP tokenizer: byte-level BPE over `bpe_simple_vocab_16e6` (49,408 tokens),
//! producing exactly the ids of `open_clip.get_tokenizer('ViT-B-32')`.
//!
//! Cleaning (ftfy, `html.unescape` twice, whitespace collapse, lower-case) is ported
//! in `clean`; pre-tokenisation (open_clip's regex), byte-level mapping and BPE run in
//! the `tokenizers` crate, configured here from the same merges file open_clip ships.

mod clean;
mod ftfy;
mod html;
mod tables;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use rayon::prelude::*;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

pub use clean::clean_text;
pub use ftfy::fix_text;
pub use html::unescape as html_unescape;

/// open_clip's default context length.
pub const CONTEXT_LENGTH: usize = 77;
pub const SOT_TOKEN: &str = "<start_of_text>";
pub const EOT_TOKEN: &str = "<end_of_text>";

static BUNDLED_BPE_GZ: &[u8] = include_bytes!("../../../data/bpe_simple_vocab_16e6.txt.gz");

/// The regex open_clip's SimpleTokenizer splits cleaned text with (specials excluded:
/// they are added tokens here).
const PRETOKENIZE_PATTERN: &str = r"(?i)'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// CLIP's tokenizer. Cheap to clone (the BPE tables are shared).
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    context_length: usize,
    sot_id: u32,
    eot_id: u32,
}

impl ClipTokenizer {
    /// The tokenizer with open_clip's bundled vocabulary and a 77-token context.
    pub fn new() -> Self {
        Self::from_gzipped_merges(BUNDLED_BPE_GZ, CONTEXT_LENGTH)
            .expect("bundled BPE vocabulary is valid")
    }

    /// Build from a `bpe_simple_vocab_16e6.txt[.gz]` merges file.
    pub fn from_merges_file(path: &Path, context_length: usize) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.starts_with(&[0x1f, 0x8b]) {
            Self::from_gzipped_merges(&bytes, context_length)
        } else {
            Self::from_merges_text(std::str::from_utf8(&bytes)?, context_length)
        }
    }

    fn from_gzipped_merges(gz: &[u8], context_length: usize) -> Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz).read_to_string(&mut text)?;
        Self::from_merges_text(&text, context_length)
    }

    /// Same vocabulary construction as open_clip's `SimpleTokenizer.__init__`.
    fn from_merges_text(text: &str, context_length: usize) -> Result<Self> {
        if context_length < 2 {
            return Err(anyhow!(
                "context length must be at least 2 (start and end tokens)"
            ));
        }
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(49152 - 256 - 2)
            .map(|line| {
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next()) {
                    (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
                    _ => Err(anyhow!("malformed merge line {line:?}")),
                }
            })
            .collect::<Result<_>>()?;
        let byte_chars: Vec<String> = bytes_to_unicode()
            .into_iter()
            .map(|(_, c)| String::from(c))
            .collect();
        let mut vocab_list: Vec<String> = byte_chars.clone();
        vocab_list.extend(byte_chars.iter().map(|c| format!("{c}</w>")));
        vocab_list.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab_list.push(SOT_TOKEN.into());
        vocab_list.push(EOT_TOKEN.into());
        let vocab: tokenizers::models::bpe::Vocab = vocab_list
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let sot_id = vocab[SOT_TOKEN];
        let eot_id = vocab[EOT_TOKEN];

        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".into())
            .build()
            .map_err(|e| anyhow!("building BPE: {e}"))?;
        let mut inner = Tokenizer::new(bpe);
        let split = Split::new(
            SplitPattern::Regex(PRETOKENIZE_PATTERN.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| anyhow!("pre-tokenizer regex: {e}"))?;
        let byte_level = ByteLevel::new(false, false, false);
        inner.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), byte_level.into()])));
        inner.add_special_tokens(&[
            AddedToken::from(SOT_TOKEN, true),
            AddedToken::from(EOT_TOKEN, true),
        ]);
        Ok(Self {
            inner,
            context_length,
            sot_id,
            eot_id,
        })
    }

    /// The tokenizer for a CLIP text tower: the tower's context length, and an error
    /// when its vocabulary cannot hold CLIP's ids (weights trained with another
    /// tokenizer would otherwise index past their embedding table).
    pub fn for_text_tower(cfg: &crate::clip::config::TextConfig) -> Result<Self> {
        let tok = Self::new().with_context_length(cfg.context_length)?;
        if cfg.vocab_size < tok.vocab_size() {
            return Err(anyhow!(
                "the model's text vocabulary ({}) is smaller than CLIP's tokenizer ({}): \
                 these weights were not trained with CLIP's tokenizer",
                cfg.vocab_size,
                tok.vocab_size()
            ));
        }
        Ok(tok)
    }

    /// The same tokenizer with another context length (open_clip's `context_length`).
    pub fn with_context_length(mut self, context_length: usize) -> Result<Self> {
        if context_length < 2 {
            return Err(anyhow!(
                "context length must be at least 2 (start and end tokens)"
            ));
        }
        self.context_length = context_length;
        Ok(self)
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }
    pub fn sot_id(&self) -> u32 {
        self.sot_id
    }
    pub fn eot_id(&self) -> u32 {
        self.eot_id
    }
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// BPE ids of one text after CLIP's cleaning, without start/end tokens
    /// (open_clip's `SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cleaned = clean_text(text);
        if cleaned.is_empty() {
            return Vec::new();
        }
        self.inner
            .encode_fast(cleaned.as_str(), false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    /// One row of the model's input: `[SOT, ids..., EOT, 0, ...]`, truncated to the
    /// context length with EOT forced into the last slot (open_clip's `__call__`).
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        let n = self.context_length;
        let mut row = Vec::with_capacity(n);
        row.push(self.sot_id as i32);
        row.extend(self.encode(text).into_iter().map(|id| id as i32));
        row.push(self.eot_id as i32);
        if row.len() > n {
            row.truncate(n);
            row[n - 1] = self.eot_id as i32;
        }
        row.resize(n, 0);
        row
    }

    /// Tokenize many texts in parallel; rows in input order.
    pub fn tokenize_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Vec<i32>> {
        texts
            .par_iter()
            .map(|t| self.tokenize(t.as_ref()))
            .collect()
    }

    /// Ids back to text (`</w>` becomes a space), like open_clip's `decode`.
    pub fn decode(&self, ids: &[u32]) -> String {
        let byte_decoder: HashMap<char, u8> = bytes_to_unicode()
            .into_iter()
            .map(|(b, c)| (c, b))
            .collect();
        let mut text = String::new();
        for id in ids {
            if let Some(tok) = self.inner.id_to_token(*id) {
                text.push_str(&tok);
            }
        }
        let bytes: Vec<u8> = text
            .chars()
            .map(|c| byte_decoder.get(&c).copied().unwrap_or(b'?'))
            .collect();
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }
}

impl Default for ClipTokenizer {
    fn default() -> Self {
        Self::new()
    }
}

/// GPT-2/CLIP's reversible byte -> printable character table, in open_clip's order
/// (printable bytes first): the first 256 vocabulary entries follow this order.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .map(|(b, c)| (b as u8, char::from_u32(c).expect("valid codepoint")))
        .collect()
}
