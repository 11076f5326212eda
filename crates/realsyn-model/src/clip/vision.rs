//! The ViT image tower (open_clip's `VisionTransformer`): patch embedding, class
//! token, learned positional embedding, ln_pre, transformer, ln_post on the class
//! token, projection.

use burn::module::{Initializer, Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::config::ClipConfig;
use crate::common::stages::TowerStages;
use crate::common::transformer::{Activation, Transformer, layer_norm, vit_stem};

#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    /// Patch embedding, a bias-free conv with stride = kernel: [width, 3, p, p].
    pub conv1: Param<Tensor<B, 4>>,
    pub class_embedding: Param<Tensor<B, 1>>,
    /// [grid * grid + 1, width]
    pub positional_embedding: Param<Tensor<B, 2>>,
    pub ln_pre: LayerNorm<B>,
    pub transformer: Transformer<B>,
    pub ln_post: LayerNorm<B>,
    /// [width, embed_dim] (already "input-major", as open_clip stores it).
    pub proj: Param<Tensor<B, 2>>,
    pub patch_size: usize,
    pub image_size: usize,
}

impl<B: Backend> VisionTransformer<B> {
    /// Random init following open_clip (normal, std = width^-0.5, for the embeddings
    /// and projection). Parameters are lazy: loading weights never pays for the init.
    pub fn new(cfg: &ClipConfig, act: Activation, device: &B::Device) -> Self {
        let v = &cfg.vision_cfg;
        let scale = (v.width as f64).powf(-0.5);
        let normal = Initializer::Normal {
            mean: 0.0,
            std: scale,
        };
        let tokens = cfg.grid_size() * cfg.grid_size() + 1;
        let fan_in = 3 * v.patch_size * v.patch_size;
        let conv_bound = (1.0 / fan_in as f64).sqrt();
        Self {
            conv1: Initializer::Uniform {
                min: -conv_bound,
                max: conv_bound,
            }
            .init([v.width, 3, v.patch_size, v.patch_size], device),
            class_embedding: normal.init([v.width], device),
            positional_embedding: normal.init([tokens, v.width], device),
            ln_pre: layer_norm(v.width, device),
            transformer: Transformer::new(
                v.width,
                v.layers,
                cfg.vision_heads(),
                v.mlp_ratio,
                act,
                device,
            ),
            ln_post: layer_norm(v.width, device),
            proj: normal.init([v.width, cfg.embed_dim], device),
            patch_size: v.patch_size,
            image_size: v.image_size,
        }
    }

    /// `images`: [batch, 3, image_size, image_size], normalised. Returns [batch, embed_dim].
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.stages(images).run()
    }

    /// The forward pass cut at the residual blocks.
    pub fn stages(&self, images: Tensor<B, 4>) -> TowerStages<'_, B> {
        TowerStages {
            stem: Box::new(move || {
                vit_stem(
                    images.clone(),
                    self.conv1.val(),
                    self.class_embedding.val(),
                    self.positional_embedding.val(),
                    &self.ln_pre,
                    self.image_size,
                )
            }),
            blocks: self.transformer.stages(false),
            head: Box::new(|x: Tensor<B, 3>| {
                let [b, _, width] = x.dims();
                // ln_post is per token, so normalising only the class token is identical.
                let cls_out = x.slice([0..b, 0..1]).reshape([b, width]);
                self.ln_post.forward(cls_out).matmul(self.proj.val())
            }),
        }
    }
}
