//! The text tower (open_clip's text half of `CLIP`): token + positional embedding,
//! causal transformer, ln_final, pooling at the end-of-text token (the argmax id),
//! projection.

use burn::module::{Initializer, Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::config::ClipConfig;
use crate::common::stages::TowerStages;
use crate::common::transformer::{Activation, Transformer, layer_norm};

#[derive(Module, Debug)]
pub struct TextTransformer<B: Backend> {
    pub token_embedding: Embedding<B>,
    /// [context_length, width]
    pub positional_embedding: Param<Tensor<B, 2>>,
    pub transformer: Transformer<B>,
    pub ln_final: LayerNorm<B>,
    /// [width, embed_dim]
    pub text_projection: Param<Tensor<B, 2>>,
}

impl<B: Backend> TextTransformer<B> {
    /// Random init as open_clip's `CLIP.init_parameters` does for the embeddings and
    /// projection (token std 0.02, positional std 0.01, projection std width^-0.5).
    pub fn new(cfg: &ClipConfig, act: Activation, device: &B::Device) -> Self {
        let t = &cfg.text_cfg;
        let mut token_embedding = EmbeddingConfig::new(t.vocab_size, t.width).init(device);
        token_embedding.weight = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        }
        .init([t.vocab_size, t.width], device);
        Self {
            token_embedding,
            positional_embedding: Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            }
            .init([t.context_length, t.width], device),
            transformer: Transformer::new(t.width, t.layers, t.heads, t.mlp_ratio, act, device),
            ln_final: layer_norm(t.width, device),
            text_projection: Initializer::Normal {
                mean: 0.0,
                std: (t.width as f64).powf(-0.5),
            }
            .init([t.width, cfg.embed_dim], device),
        }
    }

    /// `tokens`: [batch, context_length] ids. Returns [batch, embed_dim].
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        self.stages(tokens).run()
    }

    /// The forward pass cut at the residual blocks.
    pub fn stages(&self, tokens: Tensor<B, 2, Int>) -> TowerStages<'_, B> {
        let [b, n] = tokens.dims();
        let [ctx, width] = self.positional_embedding.dims();
        assert!(n <= ctx, "text tower takes at most {ctx} tokens, got {n}");
        // Pool at the EOT token (highest id) first: ln_final is per token.
        let eot = tokens
            .clone()
            .argmax(1)
            .reshape([b, 1, 1])
            .expand([b, 1, width]);
        TowerStages {
            stem: Box::new(move || {
                self.token_embedding.forward(tokens.clone())
                    + self
                        .positional_embedding
                        .val()
                        .slice([0..n])
                        .unsqueeze_dim(0)
            }),
            blocks: self.transformer.stages(true),
            head: Box::new(move |x: Tensor<B, 3>| {
                let pooled = x.gather(1, eot.clone()).reshape([b, width]);
                self.ln_final
                    .forward(pooled)
                    .matmul(self.text_projection.val())
            }),
        }
    }
}
