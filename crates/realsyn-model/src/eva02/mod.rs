//! EVA02-CLIP's image tower (Sun et al. 2023, "EVA-CLIP"), as open_clip builds it
//! through timm's `Eva`: the paper's own encoder (RealSyn §3, EVA02-CLIP E/14-plus
//! encodes every image and sentence of the builder).
//!
//! The text tower of every EVA02-CLIP config is open_clip's text transformer, so an
//! EVA02 model is a [`crate::Clip`] whose `visual` is [`EvaVisionTower`]: everything
//! that takes a CLIP (embedding, evaluation, the builder's encoders, conversion,
//! training) takes EVA02 the same way.
//!
//! - `config`: the design flags and timm's EVA02 names resolved into them;
//! - `rope`: the 2-D rotary position embedding;
//! - `block`: attention (q/k/v one matrix whichever of timm's layouts the weights use,
//!   sub-LN), SwiGLU, pre/post-norm blocks;
//! - `weights`: open_clip's `visual.trunk.*` keys and the EVA-CLIP release's layout.

pub mod block;
pub mod config;
pub mod rope;
pub mod weights;

use std::rc::Rc;

use burn::module::{Initializer, Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::clip::config::ClipConfig;
use crate::common::stages::{BlockStage, TowerStages};
use crate::common::transformer::patch_tokens;
use block::{EvaBlock, eva_layer_norm, eva_linear};
use config::EvaDesign;

#[derive(Module, Debug)]
pub struct EvaVisionTower<B: Backend> {
    /// `patch_embed.proj`: a stride-p conv with bias, `[width, 3, p, p]`.
    pub patch_weight: Param<Tensor<B, 4>>,
    pub patch_bias: Param<Tensor<B, 1>>,
    /// `[1, 1, width]`, timm's shape.
    pub cls_token: Param<Tensor<B, 3>>,
    /// `[1, 1 + grid^2, width]`: absolute positions, the class token's included.
    pub pos_embed: Param<Tensor<B, 3>>,
    pub blocks: Vec<EvaBlock<B>>,
    pub norm: LayerNorm<B>,
    /// timm's classifier head, which open_clip uses as the projection to `embed_dim`.
    pub head: Linear<B>,
    pub patch_size: usize,
    pub image_size: usize,
    pub heads: usize,
    /// 0: no RoPE; else the reference grid RoPE positions are rescaled onto.
    pub rope_ref_grid: usize,
}

impl<B: Backend> EvaVisionTower<B> {
    /// Random init as timm's `Eva.init_weights` (std 0.02 for the tokens, positions and
    /// every Linear); lazy, so loading weights never pays for it.
    pub fn new(cfg: &ClipConfig, design: &EvaDesign, device: &B::Device) -> Self {
        let v = &cfg.vision_cfg;
        let grid = v.image_size / v.patch_size;
        let heads = v.width / v.head_width;
        let hidden = (v.width as f64 * v.mlp_ratio) as usize;
        let small = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let fan_in = 3 * v.patch_size * v.patch_size;
        let conv_bound = (1.0 / fan_in as f64).sqrt();
        Self {
            patch_weight: Initializer::Uniform {
                min: -conv_bound,
                max: conv_bound,
            }
            .init([v.width, 3, v.patch_size, v.patch_size], device),
            patch_bias: Initializer::Zeros.init([v.width], device),
            cls_token: small.init([1, 1, v.width], device),
            pos_embed: small.init([1, grid * grid + 1, v.width], device),
            blocks: (0..v.layers)
                .map(|_| EvaBlock::new(v.width, heads, hidden, design, device))
                .collect(),
            norm: eva_layer_norm(v.width, device),
            head: eva_linear(v.width, cfg.embed_dim, true, device),
            patch_size: v.patch_size,
            image_size: v.image_size,
            heads,
            rope_ref_grid: design.rope_ref_grid.unwrap_or(0),
        }
    }

    /// `images`: `[batch, 3, image_size, image_size]`, normalised. Returns `[batch, embed_dim]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.stages(images).run()
    }

    /// The forward pass cut at the blocks; the RoPE tables are built once and shared.
    pub fn stages(&self, images: Tensor<B, 4>) -> TowerStages<'_, B> {
        let g = self.image_size / self.patch_size;
        let width = self.pos_embed.dims()[2];
        let rope = (self.rope_ref_grid > 0).then(|| {
            rope::rotary(g, width / self.heads, self.rope_ref_grid, &images.device())
                .cast(images.dtype())
        });
        let rope = Rc::new(rope);
        TowerStages {
            stem: Box::new(move || {
                let x = patch_tokens(images.clone(), self.patch_weight.val(), self.image_size);
                let b = x.dims()[0];
                let x = x + self.patch_bias.val().reshape([1, 1, width]);
                let cls = self.cls_token.val().expand([b, 1, width]);
                Tensor::cat(vec![cls, x], 1) + self.pos_embed.val()
            }),
            blocks: self
                .blocks
                .iter()
                .map(|block| {
                    let rope = Rc::clone(&rope);
                    Box::new(move |x| block.forward(x, rope.as_ref().as_ref())) as BlockStage<'_, B>
                })
                .collect(),
            head: Box::new(move |x: Tensor<B, 3>| {
                // The final norm is per token: normalising only the pooled class token
                // is identical.
                let b = x.dims()[0];
                let cls_out = x.slice([0..b, 0..1]).reshape([b, width]);
                self.head.forward(self.norm.forward(cls_out))
            }),
        }
    }
}
