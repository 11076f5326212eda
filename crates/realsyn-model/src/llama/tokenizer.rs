//! The tokenizer and chat template a GGUF file carries in its metadata
//! (`tokenizer.ggml.*`, `tokenizer.chat_template`), run by the `tokenizers` crate
//! (byte-level BPE) and `minijinja` (the Jinja template, as `transformers`'
//! `apply_chat_template` renders it).
//!
//! Byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) are supported with
//! the pre-tokenizers llama.cpp names `smollm` (digits split, then GPT-2's regex),
//! `gpt2`/`default` and `llama-bpe` (LLaMA 3's regex). SentencePiece vocabularies
//! (`"llama"`: LLaMA 1/2, Mistral v0.1) are refused with that reason.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::common::gguf::Gguf;

/// LLaMA 3's split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One chat turn.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

#[derive(Clone)]
pub struct LlamaTokenizer {
    inner: Tokenizer,
    chat_template: Option<String>,
    bos: Option<(u32, String)>,
    add_bos: bool,
    eos: Vec<(u32, String)>,
}

impl LlamaTokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model = g.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            bail!(
                "GGUF tokenizer model {model:?}: realsyn runs byte-level BPE vocabularies \
                 (\"gpt2\": LLaMA 3, SmolLM2, Qwen-style); SentencePiece (\"llama\") is not supported yet"
            );
        }
        let tokens: Vec<&str> = g
            .get("tokenizer.ggml.tokens")?
            .as_array()
            .context("tokenizer.ggml.tokens is not an array")?
            .iter()
            .map(|v| v.as_str().context("a token is not a string"))
            .collect::<Result<_>>()?;
        let merges: Vec<&str> = g
            .get("tokenizer.ggml.merges")?
            .as_array()
            .context("tokenizer.ggml.merges is not an array")?
            .iter()
            .map(|v| v.as_str().context("a merge is not a string"))
            .collect::<Result<_>>()?;
        let types: Vec<u64> = match g.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .context("token_type is not an array")?
                .iter()
                .map(|t| t.as_u64().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let pre = g
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        let pre_tokenizer = match pre {
            "gpt2" | "default" => byte_level,
            "smollm" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level]}),
            "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
            other => bail!(
                "GGUF pre-tokenizer {other:?} is not supported (smollm, gpt2, default, llama-bpe)"
            ),
        };
        // Control (3) and user-defined (4) tokens are matched whole in the text, as
        // llama.cpp's `parse_special` and Hugging Face's added tokens do.
        let added: Vec<Value> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, t))| **t == 3 || **t == 4)
            .map(|(id, (tok, _))| {
                json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let vocab: serde_json::Map<String, Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), json!(i)))
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": pre == "llama-bpe",
                      "vocab": vocab, "merges": merges},
        });
        let inner: Tokenizer = spec
            .to_string()
            .parse()
            .map_err(|e| anyhow!("building the GGUF tokenizer: {e}"))?;
        let id_tok = |key: &str| -> Option<(u32, String)> {
            let id = g.metadata.get(key)?.as_u64()? as usize;
            Some((id as u32, tokens.get(id)?.to_string()))
        };
        let mut eos: Vec<(u32, String)> =
            ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
                .iter()
                .filter_map(|k| id_tok(k))
                .collect();
        eos.dedup();
        Ok(Self {
            inner,
            chat_template: g
                .metadata
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            bos: id_tok("tokenizer.ggml.bos_token_id"),
            add_bos: g
                .metadata
                .get("tokenizer.ggml.add_bos_token")
                .is_some_and(|v| *v == crate::common::gguf::Value::Bool(true)),
            eos,
        })
    }

    /// Token ids of `text`, special tokens in it matched whole; BOS first when the
    /// model asks for it (`tokenizer.ggml.add_bos_token`) and the text lacks it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        let mut ids = enc.get_ids().to_vec();
        if self.add_bos
            && let Some((bos, _)) = &self.bos
            && ids.first() != Some(bos)
        {
            ids.insert(0, *bos);
        }
        Ok(ids)
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow!("detokenizing: {e}"))
    }

    /// The ids that end a generation (`eos` and `eot` of the metadata).
    pub fn stop_ids(&self) -> Vec<u32> {
        self.eos.iter().map(|(id, _)| *id).collect()
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The conversation rendered by the model's chat template with the assistant's
    /// turn opened (`add_generation_prompt=True`).
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String> {
        let template = self.chat_template.as_deref().context(
            "this GGUF file has no tokenizer.chat_template: use a chat (instruct) model, or send raw prompts",
        )?;
        let mut env = minijinja::Environment::new();
        // A template comes with the weights, from anyone: bound its work (two nested
        // loops of 100,000 would otherwise run for hours). Real chat templates render a
        // conversation in a few thousand instructions.
        env.set_fuel(Some(realsyn_io::limits::CHAT_TEMPLATE_FUEL.get()));
        env.add_template("chat", template)
            .map_err(|e| anyhow!("the GGUF chat template does not parse: {e}"))?;
        let tok =
            |t: &Option<(u32, String)>| t.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
        env.get_template("chat")?
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => tok(&self.bos),
                eos_token => tok(&self.eos.first().cloned()),
            })
            .map_err(|e| anyhow!("rendering the chat template: {e}"))
    }
}
