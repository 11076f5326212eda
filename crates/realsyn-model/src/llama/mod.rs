//! A Llama-family decoder (LLaMA 2/3, SmolLM2, Mistral-style GQA models) for the
//! builder's LLM merge (paper §3.2 "image semantic augmented generation", App. A.2):
//! token embedding, pre-norm blocks of RMSNorm -> grouped-query attention with rotary
//! position embedding -> RMSNorm -> SwiGLU MLP, a final RMSNorm and the output head
//! (tied to the embedding when the checkpoint has none).
//!
//! Parameters use Hugging Face `LlamaForCausalLM`'s names and layout, so one model
//! loads both a Hugging Face snapshot and a llama.cpp GGUF file (`weights`), whose
//! q/k rows are permuted back exactly as `transformers` does. RoPE is therefore the
//! Hugging Face "rotate half" form. `tokenizer` reads the vocabulary and the chat
//! template from the GGUF metadata; `generate` runs batched greedy or seeded sampling
//! with a KV cache.

pub mod generate;
pub mod tokenizer;
pub mod weights;

use anyhow::{Result, bail, ensure};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::common::rotary::{RotaryPairs, RotaryTables, signed_sin};

/// The architecture, in the field names of Hugging Face's `LlamaConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_ctx")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10000.0
}
fn default_ctx() -> usize {
    2048
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.hidden_size > 0 && self.num_attention_heads > 0 && self.num_key_value_heads > 0,
            "hidden_size {}, num_attention_heads {} and num_key_value_heads {} must be positive",
            self.hidden_size,
            self.num_attention_heads,
            self.num_key_value_heads
        );
        ensure!(
            self.hidden_size % self.num_attention_heads == 0,
            "hidden_size {} is not a multiple of num_attention_heads {}",
            self.hidden_size,
            self.num_attention_heads
        );
        ensure!(
            self.num_attention_heads % self.num_key_value_heads == 0,
            "num_attention_heads {} is not a multiple of num_key_value_heads {}",
            self.num_attention_heads,
            self.num_key_value_heads
        );
        ensure!(
            self.head_dim() % 2 == 0,
            "RoPE needs an even head dimension"
        );
        Ok(())
    }

    /// Parameters of a model of this shape (what its weight file must hold), in u128
    /// so that no header can overflow it.
    pub fn parameter_count(&self) -> u128 {
        let (w, hd) = (self.hidden_size as u128, self.head_dim() as u128);
        let (q, kv) = (
            self.num_attention_heads as u128 * hd,
            self.num_key_value_heads as u128 * hd,
        );
        let ffn = self.intermediate_size as u128;
        let block = 2 * w + w * q + 2 * w * kv + q * w + 3 * w * ffn;
        let embed = self.vocab_size as u128 * w;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + self.num_hidden_layers as u128 * block + w + head
    }

    /// Parse a Hugging Face `config.json`, refusing what this model does not run.
    pub fn from_hf_json(json: &str) -> Result<Self> {
        let raw: serde_json::Value = serde_json::from_str(json)?;
        if let Some(s) = raw.get("rope_scaling").filter(|v| !v.is_null()) {
            bail!("rope_scaling {s} (LLaMA 3.1+ long-context RoPE) is not supported yet");
        }
        if raw.get("attention_bias").and_then(|v| v.as_bool()) == Some(true) {
            bail!("attention_bias = true (Qwen-style q/k/v biases) is not supported");
        }
        let mut cfg: Self = serde_json::from_value(raw.clone())?;
        if raw.get("num_key_value_heads").is_none() {
            cfg.num_key_value_heads = cfg.num_attention_heads;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Grouped-query self-attention (no biases, as in every Llama).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub heads: usize,
    pub kv_heads: usize,
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<Block<B>>,
    pub norm: RmsNorm<B>,
    /// `None` when tied to `embed_tokens` (SmolLM2, LLaMA 3.2 1B/3B).
    pub lm_head: Option<Linear<B>>,
    pub rope_theta: f64,
}

/// Keys and values of the positions seen so far, per layer: [batch, kv_heads, t, head_dim].
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    /// Per row: is position p padding (left padding of batched prompts).
    pad: Vec<Vec<bool>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(layers: usize, batch: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| None).collect(),
            pad: vec![Vec::new(); batch],
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.pad.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn linear<B: Backend>(i: usize, o: usize, device: &B::Device) -> Linear<B> {
    LinearConfig::new(i, o).with_bias(false).init(device)
}

/// A Linear over `[batch, tokens, d]` as one `[batch * tokens, d]` GEMM.
fn linear_2d<B: Backend>(l: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, n, d] = x.dims();
    let y = l.forward(x.reshape([b * n, d]));
    let out = y.dims()[1];
    y.reshape([b, n, out])
}

/// cos and signed sin of RoPE's angles for positions `start..start + n`,
/// `[1, 1, n, head_dim]`: each frequency repeated over both halves as Hugging Face's
/// `LlamaRotaryEmbedding` does, the sin negated on the first half (the sign of
/// `rotate_half`, see `common::rotary`).
fn rope_tables<B: Backend>(
    theta: f64,
    head_dim: usize,
    start: usize,
    n: usize,
    device: &B::Device,
) -> RotaryTables<B> {
    let half = head_dim / 2;
    // Angles in f64 then rounded, as the peer computes inv_freq in f32 and the product
    // position * inv_freq in f32: keep the f32 rounding of inv_freq.
    let inv: Vec<f32> = (0..half)
        .map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32)
        .collect();
    let (mut cos, mut sin) = (
        Vec::with_capacity(n * head_dim),
        Vec::with_capacity(n * head_dim),
    );
    for p in start..start + n {
        for _half in 0..2 {
            for &f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
    }
    let sin = signed_sin(RotaryPairs::Halves, &sin, head_dim);
    RotaryTables::new(cos, sin, head_dim, RotaryPairs::Halves, device)
}

impl<B: Backend> Attention<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RotaryTables<B>,
        mask: &Tensor<B, 4, Bool>,
        cache: &mut Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    ) -> Tensor<B, 3> {
        let [b, n, w] = x.dims();
        let d = w / self.heads;
        let split = |l: &Linear<B>, heads: usize| {
            linear_2d(l, x.clone())
                .reshape([b, n, heads, d])
                .swap_dims(1, 2)
        };
        let q = rope.apply(split(&self.q_proj, self.heads));
        let k = rope.apply(split(&self.k_proj, self.kv_heads));
        let v = split(&self.v_proj, self.kv_heads);
        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        // Grouped-query attention without copying keys: the `rep` query heads that
        // share a key/value head become `rep` x n query rows of that head (query head
        // g * rep + r reads key head g, as Hugging Face's `repeat_kv` pairs them).
        let rep = self.heads / self.kv_heads;
        let t = k.dims()[2];
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let q = q.reshape([b, self.kv_heads, rep * n, d]);
        let mask = mask.clone().expand([b, self.kv_heads, rep * n, t]);
        let out = attention(q, k, v, Some(mask), None, options).reshape([b, self.heads, n, d]);
        linear_2d(&self.o_proj, out.swap_dims(1, 2).reshape([b, n, w]))
    }
}

impl<B: Backend> Llama<B> {
    /// A randomly initialised model of this shape (weights are loaded over it).
    pub fn new(cfg: &LlamaConfig, device: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let (w, hd) = (cfg.hidden_size, cfg.head_dim());
        let norm = || {
            RmsNormConfig::new(w)
                .with_epsilon(cfg.rms_norm_eps)
                .init(device)
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| Block {
                input_layernorm: norm(),
                self_attn: Attention {
                    q_proj: linear(w, cfg.num_attention_heads * hd, device),
                    k_proj: linear(w, cfg.num_key_value_heads * hd, device),
                    v_proj: linear(w, cfg.num_key_value_heads * hd, device),
                    o_proj: linear(cfg.num_attention_heads * hd, w, device),
                    heads: cfg.num_attention_heads,
                    kv_heads: cfg.num_key_value_heads,
                },
                post_attention_layernorm: norm(),
                mlp: Mlp {
                    gate_proj: linear(w, cfg.intermediate_size, device),
                    up_proj: linear(w, cfg.intermediate_size, device),
                    down_proj: linear(cfg.intermediate_size, w, device),
                },
            })
            .collect();
        Ok(Self {
            embed_tokens: EmbeddingConfig::new(cfg.vocab_size, w).init(device),
            layers,
            norm: norm(),
            lm_head: (!cfg.tie_word_embeddings).then(|| linear(w, cfg.vocab_size, device)),
            rope_theta: cfg.rope_theta,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.weight.dims()[0]
    }

    fn head_dim(&self) -> usize {
        let a = &self.layers[0].self_attn;
        a.q_proj.weight.dims()[1] / a.heads
    }

    /// Run `ids` ([batch, n]) after the positions already in `cache`, appending their
    /// keys and values; `pad[i][j]` marks padding among the new ids. Returns the final
    /// hidden states, [batch, n, hidden].
    pub fn forward_cached(
        &self,
        ids: Tensor<B, 2, Int>,
        pad: &[Vec<bool>],
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let [b, n] = ids.dims();
        let device = ids.device();
        let start = cache.len();
        for (row, p) in cache.pad.iter_mut().zip(pad) {
            row.extend_from_slice(p);
        }
        let t = start + n;
        // Query i (position start + i) sees key j when j <= start + i and j is not
        // padding; a padding query sees only itself, so no row of the softmax is empty
        // (its output is discarded, and a padded key is never seen by a real query).
        // Rows are repeated for the query heads that share a key head (see Attention).
        let rep = {
            let a = &self.layers[0].self_attn;
            a.heads / a.kv_heads
        };
        let mut masked = Vec::with_capacity(b * rep * n * t);
        for row in &cache.pad {
            for _ in 0..rep {
                for i in 0..n {
                    let q = start + i;
                    for (j, &is_pad) in row.iter().enumerate() {
                        masked.push(j > q || (is_pad && j != q));
                    }
                }
            }
        }
        let mask =
            Tensor::<B, 4, Bool>::from_data(TensorData::new(masked, [b, 1, rep * n, t]), &device);
        let rope = rope_tables::<B>(self.rope_theta, self.head_dim(), start, n, &device);
        let mut x = self.embed_tokens.forward(ids);
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h =
                layer
                    .self_attn
                    .forward(layer.input_layernorm.forward(x.clone()), &rope, &mask, kv);
            x = x + h;
            let m = &layer.mlp;
            let y = layer.post_attention_layernorm.forward(x.clone());
            let g = silu(linear_2d(&m.gate_proj, y.clone())) * linear_2d(&m.up_proj, y);
            x = x + linear_2d(&m.down_proj, g);
        }
        self.norm.forward(x)
    }

    /// Logits of hidden rows [rows, hidden] -> [rows, vocab].
    pub fn head(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.lm_head {
            Some(l) => l.forward(h),
            None => h.matmul(self.embed_tokens.weight.val().transpose()),
        }
    }

    /// Next-token logits at every position of unpadded `ids` ([batch, n]):
    /// [batch, n, vocab] (for tests against the peer).
    pub fn logits(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, n] = ids.dims();
        let mut cache = KvCache::new(self.layers.len(), b);
        let h = self.forward_cached(ids, &vec![vec![false; n]; b], &mut cache);
        let d = h.dims()[2];
        self.head(h.reshape([b * n, d]))
            .reshape([b, n, self.vocab_size()])
    }
}
