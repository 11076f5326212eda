//! Batched autoregressive generation with a KV cache: prompts are left-padded to one
//! length (padding masked out of attention), then each step feeds one token per row.
//! Greedy decoding takes the first maximum, as `torch.argmax` does, so it reproduces
//! `transformers`' `generate(do_sample=False)`; sampling is temperature + top-p with a
//! per-request seed, so a request's text does not depend on its batch-mates.
//!
//! `LlamaChat` ties the model to its tokenizer: chat messages in, text out.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tokenizer::{ChatMessage, LlamaTokenizer};
use super::{KvCache, Llama, LlamaConfig};
use crate::common::gguf::Gguf;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// Nucleus mass kept when sampling (1 = all).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// Why a generation ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop condition.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// New tokens, the end-of-sequence token excluded.
    pub ids: Vec<u32>,
    pub finish: FinishReason,
}

/// The index of the first maximum (`torch.argmax`).
pub(crate) fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

fn sample(row: &[f32], p: &SamplingParams, rng: &mut StdRng) -> u32 {
    if p.temperature <= 0.0 {
        return argmax(row);
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> = row
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, ((v - max) / p.temperature).exp()))
        .collect();
    let total: f32 = probs.iter().map(|x| x.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0.0;
    let mut n = 0;
    for (_, q) in &probs {
        n += 1;
        kept += q / total;
        if kept >= p.top_p {
            break;
        }
    }
    let mass: f32 = probs[..n].iter().map(|x| x.1).sum();
    let mut u = rng.random::<f32>() * mass;
    for &(id, q) in &probs[..n] {
        if u < q {
            return id;
        }
        u -= q;
    }
    probs[n - 1].0
}

/// Generate for each prompt. `stop_ids` end a row; `stop(row, new_ids)` may end it
/// early (stop strings), the last token kept.
pub fn generate<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    params: &[SamplingParams],
    stop_ids: &[u32],
    stop: &dyn Fn(usize, &[u32]) -> bool,
    max_positions: usize,
    device: &B::Device,
) -> Result<Vec<Generated>> {
    let b = prompts.len();
    if b == 0 {
        return Ok(Vec::new());
    }
    assert_eq!(params.len(), b, "one SamplingParams per prompt");
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let steps = params.iter().map(|p| p.max_new_tokens).max().unwrap_or(0);
    if prompts.iter().any(Vec::is_empty) {
        bail!("an empty prompt has no next token");
    }
    if longest + steps > max_positions {
        bail!(
            "a prompt of {longest} tokens + {steps} new ones exceeds the model's context of {max_positions}"
        );
    }
    let vocab = model.vocab_size();
    if let Some(bad) = prompts.iter().flatten().find(|&&t| t as usize >= vocab) {
        bail!("token id {bad} is outside the vocabulary of {vocab}");
    }
    let mut rngs: Vec<StdRng> = params
        .iter()
        .map(|p| StdRng::seed_from_u64(p.seed))
        .collect();
    let mut out: Vec<Generated> = (0..b)
        .map(|_| Generated {
            ids: Vec::new(),
            finish: FinishReason::Length,
        })
        .collect();
    let mut done: Vec<bool> = params.iter().map(|p| p.max_new_tokens == 0).collect();
    let mut cache = KvCache::new(model.layers.len(), b);
    // Prefill: left padding (masked) so every row's last prompt token is at one column.
    let mut flat = Vec::with_capacity(b * longest);
    let mut pad = Vec::with_capacity(b);
    for p in prompts {
        let n_pad = longest - p.len();
        flat.extend(std::iter::repeat_n(p[0] as i64, n_pad));
        flat.extend(p.iter().map(|&t| t as i64));
        pad.push((0..longest).map(|j| j < n_pad).collect::<Vec<bool>>());
    }
    let mut ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [b, longest]), device);
    let mut width = longest;
    for _ in 0..steps {
        if done.iter().all(|&d| d) {
            break;
        }
        let h = model.forward_cached(ids, &pad, &mut cache);
        let d = h.dims()[2];
        let last = h.slice([0..b, width - 1..width]).reshape([b, d]);
        let logits = model
            .head(last)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut next = Vec::with_capacity(b);
        for i in 0..b {
            let tok = sample(
                &logits[i * vocab..(i + 1) * vocab],
                &params[i],
                &mut rngs[i],
            );
            if !done[i] {
                if stop_ids.contains(&tok) {
                    out[i].finish = FinishReason::Stop;
                    done[i] = true;
                } else {
                    out[i].ids.push(tok);
                    if stop(i, &out[i].ids) {
                        out[i].finish = FinishReason::Stop;
                        done[i] = true;
                    } else if out[i].ids.len() >= params[i].max_new_tokens {
                        done[i] = true;
                    }
                }
            }
            next.push(tok as i64);
        }
        ids = Tensor::from_data(TensorData::new(next, [b, 1]), device);
        pad = vec![vec![false]; b];
        width = 1;
    }
    Ok(out)
}

/// One chat completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// A Llama with its tokenizer: the embedded LLM.
pub struct LlamaChat<B: Backend> {
    pub model: Llama<B>,
    pub config: LlamaConfig,
    pub tokenizer: LlamaTokenizer,
    pub device: B::Device,
    /// What to call the model in outputs (the GGUF `general.name` or the file name).
    pub name: String,
}

impl<B: Backend> LlamaChat<B> {
    /// Load a GGUF file (weights, tokenizer, chat template).
    pub fn load_gguf(path: &Path, device: &B::Device) -> Result<Self> {
        let g = Gguf::open(path)?;
        let tokenizer = LlamaTokenizer::from_gguf(&g)?;
        let (model, config) = Llama::from_gguf(&g, device)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            model,
            config,
            tokenizer,
            device: device.clone(),
            name,
        })
    }

    /// Generate from raw prompt ids.
    pub fn generate_ids(
        &self,
        prompts: &[Vec<u32>],
        params: &[SamplingParams],
        stop: &[String],
    ) -> Result<Vec<Generated>> {
        let tok = &self.tokenizer;
        let check = |_: usize, ids: &[u32]| -> bool {
            !stop.is_empty()
                && tok
                    .decode(ids)
                    .is_ok_and(|t| stop.iter().any(|s| t.contains(s.as_str())))
        };
        generate(
            &self.model,
            prompts,
            params,
            &tok.stop_ids(),
            &check,
            self.config.max_position_embeddings,
            &self.device,
        )
    }

    /// Chat completions for a batch of conversations. Text is cut before the first
    /// stop string, as OpenAI's API does.
    pub fn complete(
        &self,
        conversations: &[Vec<ChatMessage>],
        params: &[SamplingParams],
        stop: &[String],
    ) -> Result<Vec<Completion>> {
        let prompts = conversations
            .iter()
            .map(|c| {
                self.tokenizer
                    .encode(&self.tokenizer.apply_chat_template(c)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let generated = self.generate_ids(&prompts, params, stop)?;
        prompts
            .iter()
            .zip(generated)
            .map(|(p, g)| {
                let mut text = self.tokenizer.decode(&g.ids)?;
                if let Some(cut) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                    text.truncate(cut);
                }
                Ok(Completion {
                    text,
                    finish: g.finish,
                    prompt_tokens: p.len(),
                    completion_tokens: g.ids.len(),
                })
            })
            .collect()
    }
}
