//! GIT (Wang et al. 2022, "GIT: A Generative Image-to-text Transformer"), Hugging
//! Face's `GitForCausalLM`: the builder's captioner (the paper's OFA step, §3.2; OFA
//! runs in no library that reaches this machine, see docs/generation.md).
//!
//! - image encoder: CLIP's ViT (class token + patches, pre-LN, QuickGELU) with
//!   `post_layernorm` on every token and no projection, built from the model
//!   library's shared ViT blocks;
//! - `visual_projection`: Linear + LayerNorm into the decoder's width;
//! - decoder: a BERT encoder stack (post-LN, exact GELU) over `[image tokens, text
//!   tokens]`: image tokens see only image tokens, text tokens see every image token
//!   and the text before them; a linear LM head (`output`, not tied).
//!
//! Because image tokens never see text, their keys and values at every layer are
//! computed once per image (`ImagePrefix`); transformers recomputes them at every
//! step, which gives the same numbers. Generation (greedy, beam search) and the
//! captioner that ties the model to its WordPiece tokenizer are in `generate`;
//! Hugging Face snapshots are read by `weights`.

pub mod config;
pub mod generate;
pub mod weights;

use anyhow::Result;
use burn::module::{Initializer, Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor, TensorData};

pub use config::{GitConfig, GitVisionConfig};

use crate::common::transformer::{Activation, Transformer, layer_norm, linear_2d, vit_stem};

/// The image encoder (`git.image_encoder.vision_model`).
#[derive(Module, Debug)]
pub struct GitVision<B: Backend> {
    /// `embeddings.patch_embedding.weight`, a bias-free conv: [width, 3, p, p].
    pub conv1: Param<Tensor<B, 4>>,
    pub class_embedding: Param<Tensor<B, 1>>,
    /// [grid * grid + 1, width]
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// `pre_layrnorm` (sic, transformers' name).
    pub ln_pre: LayerNorm<B>,
    pub transformer: Transformer<B>,
    pub ln_post: LayerNorm<B>,
    pub image_size: usize,
}

impl<B: Backend> GitVision<B> {
    fn new(cfg: &GitConfig, device: &B::Device) -> Result<Self> {
        let v = &cfg.vision_config;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Ok(Self {
            conv1: normal.init([v.hidden_size, 3, v.patch_size, v.patch_size], device),
            class_embedding: normal.init([v.hidden_size], device),
            positional_embedding: normal.init([cfg.image_tokens(), v.hidden_size], device),
            ln_pre: layer_norm(v.hidden_size, device),
            transformer: Transformer::new(
                v.hidden_size,
                v.num_hidden_layers,
                v.num_attention_heads,
                v.intermediate_size as f64 / v.hidden_size as f64,
                cfg.vision_activation()?,
                device,
            ),
            ln_post: layer_norm(v.hidden_size, device),
            image_size: v.image_size,
        })
    }

    /// `images` [batch, 3, size, size], normalised -> every token, [batch, n, width].
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        let x = vit_stem(
            images,
            self.conv1.val(),
            self.class_embedding.val(),
            self.positional_embedding.val(),
            &self.ln_pre,
            self.image_size,
        );
        self.ln_post.forward(self.transformer.forward(x, false))
    }
}

/// One decoder layer (transformers' `GitLayer`, BERT's post-LN block).
#[derive(Module, Debug)]
pub struct GitLayer<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    /// `attention.output.dense` / `attention.output.LayerNorm`
    pub attn_out: Linear<B>,
    pub attn_norm: LayerNorm<B>,
    /// `intermediate.dense`
    pub intermediate: Linear<B>,
    /// `output.dense` / `output.LayerNorm`
    pub output: Linear<B>,
    pub out_norm: LayerNorm<B>,
    pub heads: usize,
    pub activation: Activation,
}

/// Keys or values of one layer, [rows, heads, tokens, head_dim].
type Kv<B> = (Tensor<B, 4>, Tensor<B, 4>);

impl<B: Backend> GitLayer<B> {
    fn heads_of(&self, l: &Linear<B>, x: &Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, n, w] = x.dims();
        linear_2d(l, x.clone())
            .reshape([b, n, self.heads, w / self.heads])
            .swap_dims(1, 2)
    }

    /// Keys and values of `x` [rows, n, width].
    fn kv(&self, x: &Tensor<B, 3>) -> Kv<B> {
        (self.heads_of(&self.key, x), self.heads_of(&self.value, x))
    }

    /// The block for queries `x` over `keys`/`values` (`mask`: true = not seen).
    fn forward(
        &self,
        x: Tensor<B, 3>,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let [b, n, w] = x.dims();
        let q = self.heads_of(&self.query, &x);
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let t = keys.dims()[2];
        let mask = mask.map(|m| m.expand([b, self.heads, n, t]));
        let ctx = attention(q, keys, values, mask, None, options)
            .swap_dims(1, 2)
            .reshape([b, n, w]);
        let a = self.attn_norm.forward(linear_2d(&self.attn_out, ctx) + x);
        let hidden = self
            .activation
            .apply(linear_2d(&self.intermediate, a.clone()));
        self.out_norm.forward(linear_2d(&self.output, hidden) + a)
    }
}

#[derive(Module, Debug)]
pub struct Git<B: Backend> {
    pub vision: GitVision<B>,
    /// `git.visual_projection.visual_projection.{0,1}`
    pub visual_projection: Linear<B>,
    pub visual_norm: LayerNorm<B>,
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    /// `git.embeddings.LayerNorm`
    pub embed_norm: LayerNorm<B>,
    pub layers: Vec<GitLayer<B>>,
    /// The LM head (`output`).
    pub output: Linear<B>,
}

/// Every decoder layer's keys and values of the image tokens of a batch of images:
/// the fixed prefix every text token attends to.
#[derive(Debug, Clone)]
pub struct ImagePrefix<B: Backend> {
    pub layers: Vec<Kv<B>>,
}

impl<B: Backend> ImagePrefix<B> {
    /// The prefix with rows picked (e.g. each image repeated once per beam).
    pub fn select(&self, rows: &[usize]) -> Self {
        let device = self.layers[0].0.device();
        let idx = index(rows, &device);
        Self {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone().select(0, idx.clone()),
                        v.clone().select(0, idx.clone()),
                    )
                })
                .collect(),
        }
    }
}

/// The text tokens' keys and values so far, per layer.
#[derive(Debug, Clone)]
pub struct TextCache<B: Backend> {
    pub layers: Vec<Option<Kv<B>>>,
    /// Text tokens cached (the next token's position).
    pub len: usize,
}

impl<B: Backend> TextCache<B> {
    pub fn new(layers: usize) -> Self {
        Self {
            layers: vec![None; layers],
            len: 0,
        }
    }

    /// Keep `rows` (beam search's reorder; rows may repeat).
    pub fn select(&mut self, rows: &[usize]) {
        for kv in self.layers.iter_mut().flatten() {
            let idx = index(rows, &kv.0.device());
            *kv = (
                kv.0.clone().select(0, idx.clone()),
                kv.1.clone().select(0, idx),
            );
        }
    }
}

fn index<B: Backend>(rows: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    let n = rows.len();
    Tensor::from_data(TensorData::new(rows, [n]), device)
}

fn linear<B: Backend>(i: usize, o: usize, device: &B::Device) -> Linear<B> {
    LinearConfig::new(i, o).init(device)
}

impl<B: Backend> Git<B> {
    /// A randomly initialised model of this shape (weights are loaded over it).
    pub fn new(cfg: &GitConfig, device: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let w = cfg.hidden_size;
        let ln = || {
            LayerNormConfig::new(w)
                .with_epsilon(cfg.layer_norm_eps)
                .init(device)
        };
        let act = cfg.activation()?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| GitLayer {
                query: linear(w, w, device),
                key: linear(w, w, device),
                value: linear(w, w, device),
                attn_out: linear(w, w, device),
                attn_norm: ln(),
                intermediate: linear(w, cfg.intermediate_size, device),
                output: linear(cfg.intermediate_size, w, device),
                out_norm: ln(),
                heads: cfg.num_attention_heads,
                activation: act,
            })
            .collect();
        Ok(Self {
            vision: GitVision::new(cfg, device)?,
            visual_projection: linear(cfg.vision_config.hidden_size, w, device),
            // transformers builds this LayerNorm with the vision config's eps.
            visual_norm: LayerNormConfig::new(w)
                .with_epsilon(cfg.vision_config.layer_norm_eps)
                .init(device),
            word_embeddings: EmbeddingConfig::new(cfg.vocab_size, w).init(device),
            position_embeddings: EmbeddingConfig::new(cfg.max_position_embeddings, w).init(device),
            embed_norm: ln(),
            layers,
            output: linear(w, cfg.vocab_size, device),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.output.weight.dims()[1]
    }

    pub fn image_size(&self) -> usize {
        self.vision.image_size
    }

    fn max_positions(&self) -> usize {
        self.position_embeddings.weight.dims()[0]
    }

    /// Run the images through the image encoder, the projection and every decoder
    /// layer (image tokens attend only to image tokens), keeping each layer's keys
    /// and values. `images`: [batch, 3, size, size], normalised with CLIP's mean/std.
    pub fn encode_images(&self, images: Tensor<B, 4>) -> ImagePrefix<B> {
        let v = self.vision.forward(images);
        let mut x = self
            .visual_norm
            .forward(linear_2d(&self.visual_projection, v));
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (k, v) = layer.kv(&x);
            layers.push((k.clone(), v.clone()));
            x = layer.forward(x, k, v, None);
        }
        ImagePrefix { layers }
    }

    /// Feed `ids` ([rows, n]) after the text already in `cache`, each row reading its
    /// row of `prefix`; returns the final hidden states of the new tokens, [rows, n, width].
    pub fn decode(
        &self,
        prefix: &ImagePrefix<B>,
        cache: &mut TextCache<B>,
        ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let [rows, n] = ids.dims();
        let device = ids.device();
        let start = cache.len;
        assert!(
            start + n <= self.max_positions(),
            "GIT generates at most {} text tokens",
            self.max_positions()
        );
        let positions: Vec<i64> = (start..start + n).map(|p| p as i64).collect();
        let positions = Tensor::<B, 2, Int>::from_data(TensorData::new(positions, [1, n]), &device);
        let mut x = self.embed_norm.forward(
            self.word_embeddings.forward(ids) + self.position_embeddings.forward(positions),
        );
        let image_tokens = prefix.layers[0].0.dims()[2];
        // Text token i (position start + i) sees every image token and text j <= start + i;
        // a single new token sees everything cached, so it needs no mask.
        let mask = (n > 1).then(|| {
            let t = image_tokens + start + n;
            let mut masked = Vec::with_capacity(n * t);
            for i in 0..n {
                for j in 0..t {
                    masked.push(j >= image_tokens && j - image_tokens > start + i);
                }
            }
            Tensor::<B, 4, Bool>::from_data(TensorData::new(masked, [1, 1, n, t]), &device)
        });
        for ((layer, (ik, iv)), slot) in self
            .layers
            .iter()
            .zip(&prefix.layers)
            .zip(cache.layers.iter_mut())
        {
            let (k, v) = layer.kv(&x);
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                None => (k, v),
            };
            *slot = Some((k.clone(), v.clone()));
            debug_assert_eq!(ik.dims()[0], rows, "one prefix row per text row");
            let keys = Tensor::cat(vec![ik.clone(), k], 2);
            let values = Tensor::cat(vec![iv.clone(), v], 2);
            x = layer.forward(x, keys, values, mask.clone());
        }
        cache.len = start + n;
        x
    }

    /// LM-head logits of hidden rows [rows, width] -> [rows, vocab].
    pub fn head(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        self.output.forward(h)
    }

    /// Next-token logits at every text position: `images` [batch, 3, s, s], `ids`
    /// [batch, n] -> [batch, n, vocab] (`GitForCausalLM(...).logits[:, image_tokens:]`).
    pub fn logits(&self, images: Tensor<B, 4>, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, n] = ids.dims();
        let prefix = self.encode_images(images);
        let mut cache = TextCache::new(self.layers.len());
        let h = self.decode(&prefix, &mut cache, ids);
        let w = h.dims()[2];
        self.head(h.reshape([b * n, w]))
            .reshape([b, n, self.vocab_size()])
    }
}
