//! The pre-LN residual attention block shared by both towers (open_clip's
//! `ResidualAttentionBlock` + `Transformer`).
//!
//! Attention keeps open_clip's packed `in_proj` (one [d, 3d] matmul for q, k, v) and
//! calls Burn's fused `attention` op, so backends with a flash kernel use it.
//! The output projections' and `c_fc`'s biases are added by the op that follows the
//! product (`bias_residual`, `bias_gelu`: backend ops of the patched Burn,
//! third_party/burn-backend), one pass over the activations where two were.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::module::{self, attention};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, TensorPrimitive};

use super::stages::BlockStage;

/// open_clip's LayerNorm epsilon.
pub const LN_EPS: f64 = 1e-5;

/// MLP activation: exact (erf) GELU, OpenAI's QuickGELU (CLIP), or the tanh
/// approximation of GELU (GPT-2's `gelu_new`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Gelu,
    QuickGelu,
    GeluTanh,
}

impl Activation {
    pub fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::QuickGelu => x.clone() * sigmoid(x * 1.702),
            Activation::GeluTanh => {
                // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
                let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715)
                    * (2.0 / std::f64::consts::PI).sqrt();
                x * (inner.tanh() + 1.0) * 0.5
            }
        }
    }
}

pub fn layer_norm<B: Backend>(width: usize, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(width)
        .with_epsilon(LN_EPS)
        .init(device)
}

/// A Linear over `[batch, tokens, d]` as ONE `[batch * tokens, d]` GEMM: CPU backends
/// otherwise run `batch` small matrix products against a broadcast weight.
pub(crate) fn linear_2d<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, n, d] = x.dims();
    let y = linear.forward(x.reshape([b * n, d]));
    let [_, out] = y.dims();
    y.reshape([b, n, out])
}

/// `residual + linear(x)` over `[batch, tokens, d]`: the product, then its bias and
/// the residual added by one op (`ModuleOps::bias_residual`, one pass over the
/// activations where two additions were).
pub(crate) fn linear_2d_residual<B: Backend>(
    linear: &Linear<B>,
    x: Tensor<B, 3>,
    residual: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let Some(bias) = &linear.bias else {
        return residual + linear_2d(linear, x);
    };
    let [b, n, _] = x.dims();
    let product = product_2d(linear, x);
    let out = product.dims()[1];
    let residual = residual.reshape([b * n, out]);
    let sum = B::bias_residual(float(product), float(bias.val()), float(residual));
    from_float::<B, 2>(sum).reshape([b, n, out])
}

/// `gelu(linear(x))` (the exact GELU) over `[batch, tokens, d]`: the product, then its
/// bias added by the activation's op (`ModuleOps::bias_gelu`, one pass over the
/// hidden activations where two were).
fn linear_2d_gelu<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let Some(bias) = &linear.bias else {
        return gelu(linear_2d(linear, x));
    };
    let [b, n, _] = x.dims();
    let product = product_2d(linear, x);
    let out = product.dims()[1];
    let hidden = B::bias_gelu(float(product), float(bias.val()));
    from_float::<B, 2>(hidden).reshape([b, n, out])
}

/// `x W` over `[batch * tokens, d]`, without the bias (the caller's op adds it).
pub(crate) fn product_2d<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, n, d] = x.dims();
    module::linear(x.reshape([b * n, d]), linear.weight.val(), None)
}

pub(crate) fn float<B: Backend, const D: usize>(t: Tensor<B, D>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

pub(crate) fn from_float<B: Backend, const D: usize>(t: B::FloatTensorPrimitive) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// Multi-head self-attention with packed q/k/v projection.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    /// `in_proj_weight` / `in_proj_bias` of torch's `nn.MultiheadAttention` (stored [d, 3d]).
    pub in_proj: Linear<B>,
    pub out_proj: Linear<B>,
    pub heads: usize,
}

impl<B: Backend> SelfAttention<B> {
    pub fn new(width: usize, heads: usize, device: &B::Device) -> Self {
        Self {
            in_proj: LinearConfig::new(width, 3 * width).init(device),
            out_proj: LinearConfig::new(width, width).init(device),
            heads,
        }
    }

    /// `x`: [batch, tokens, width].
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        linear_2d(&self.out_proj, self.heads_out(x, causal))
    }

    /// `residual + forward(x)`, the residual added with the output projection's bias.
    pub fn forward_residual(
        &self,
        x: Tensor<B, 3>,
        residual: Tensor<B, 3>,
        causal: bool,
    ) -> Tensor<B, 3> {
        linear_2d_residual(&self.out_proj, self.heads_out(x, causal), residual)
    }

    /// The heads' outputs merged, `[batch, tokens, width]`, before the output projection.
    fn heads_out(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let [b, n, w] = x.dims();
        let h = self.heads;
        let d = w / h;
        // [b, n, 3, h, d] -> [3, b, h, n, d]
        let qkv = linear_2d(&self.in_proj, x)
            .reshape([b, n, 3, h, d])
            .permute([2, 0, 3, 1, 4]);
        let qkv = qkv.reshape([3 * b, h, n, d]);
        let q = qkv.clone().slice([0..b]);
        let k = qkv.clone().slice([b..2 * b]);
        let v = qkv.slice([2 * b..3 * b]);
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: causal,
        };
        let out = attention(q, k, v, None, None, options); // [b, h, n, d]
        out.swap_dims(1, 2).reshape([b, n, w])
    }
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub c_fc: Linear<B>,
    pub c_proj: Linear<B>,
    pub activation: Activation,
}

impl<B: Backend> Mlp<B> {
    /// `c_proj(act(c_fc(x)))` over `[batch, tokens, width]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        linear_2d(&self.c_proj, self.hidden(x))
    }

    /// `residual + forward(x)`, the residual added with `c_proj`'s bias.
    pub fn forward_residual(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        linear_2d_residual(&self.c_proj, self.hidden(x), residual)
    }

    /// `act(c_fc(x))`; the exact GELU takes `c_fc`'s bias into its op.
    fn hidden(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.activation {
            Activation::Gelu => linear_2d_gelu(&self.c_fc, x),
            act => act.apply(linear_2d(&self.c_fc, x)),
        }
    }
}

#[derive(Module, Debug)]
pub struct ResidualAttentionBlock<B: Backend> {
    pub ln_1: LayerNorm<B>,
    pub attn: SelfAttention<B>,
    pub ln_2: LayerNorm<B>,
    pub mlp: Mlp<B>,
}

impl<B: Backend> ResidualAttentionBlock<B> {
    pub fn new(
        width: usize,
        heads: usize,
        mlp_width: usize,
        act: Activation,
        device: &B::Device,
    ) -> Self {
        Self {
            ln_1: layer_norm(width, device),
            attn: SelfAttention::new(width, heads, device),
            ln_2: layer_norm(width, device),
            mlp: Mlp {
                c_fc: LinearConfig::new(width, mlp_width).init(device),
                c_proj: LinearConfig::new(mlp_width, width).init(device),
                activation: act,
            },
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let x = self
            .attn
            .forward_residual(self.ln_1.forward(x.clone()), x, causal);
        self.mlp.forward_residual(self.ln_2.forward(x.clone()), x)
    }
}

/// A stack of residual attention blocks (`transformer.resblocks.N` in open_clip).
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    pub resblocks: Vec<ResidualAttentionBlock<B>>,
}

impl<B: Backend> Transformer<B> {
    pub fn new(
        width: usize,
        layers: usize,
        heads: usize,
        mlp_ratio: f64,
        act: Activation,
        device: &B::Device,
    ) -> Self {
        let mlp_width = (width as f64 * mlp_ratio) as usize;
        Self {
            resblocks: (0..layers)
                .map(|_| ResidualAttentionBlock::new(width, heads, mlp_width, act, device))
                .collect(),
        }
    }

    pub fn forward(&self, mut x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        for block in &self.resblocks {
            x = block.forward(x, causal);
        }
        x
    }

    /// One stage per block (see [`crate::common::stages`]).
    pub fn stages(&self, causal: bool) -> Vec<BlockStage<'_, B>> {
        self.resblocks
            .iter()
            .map(|block| Box::new(move |x| block.forward(x, causal)) as BlockStage<'_, B>)
            .collect()
    }
}

/// A ViT's first block input: patch embedding, the class token in front, learned
/// positional embedding, `ln_pre`. Shared by CLIP's image tower and GIT's.
pub fn vit_stem<B: Backend>(
    images: Tensor<B, 4>,
    conv1: Tensor<B, 4>,
    class_embedding: Tensor<B, 1>,
    positional_embedding: Tensor<B, 2>,
    ln_pre: &LayerNorm<B>,
    image_size: usize,
) -> Tensor<B, 3> {
    let x = patch_tokens(images, conv1, image_size);
    let [b, _, width] = x.dims();
    let cls = class_embedding.reshape([1, 1, width]).expand([b, 1, width]);
    ln_pre.forward(Tensor::cat(vec![cls, x], 1) + positional_embedding.unsqueeze_dim(0))
}

/// The patch embedding of a ViT: a stride-p conv over square images, as ONE GEMM over
/// non-overlapping patches (faster than a general conv on every backend we run on).
/// `images` `[batch, c, image_size, image_size]`, `kernel` `[width, c, p, p]` (no bias)
/// -> `[batch, (image_size / p)^2, width]` tokens in row-major order.
pub fn patch_tokens<B: Backend>(
    images: Tensor<B, 4>,
    kernel: Tensor<B, 4>,
    image_size: usize,
) -> Tensor<B, 3> {
    let [b, c, h, w] = images.dims();
    assert!(
        h == image_size && w == image_size,
        "image tower expects {image_size}x{image_size} inputs, got {h}x{w}"
    );
    let [width, _, p, _] = kernel.dims();
    let g = h / p;
    let patches = images
        .reshape([b, c, g, p, g, p])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([b * g * g, c * p * p]);
    let kernel = kernel.reshape([width, c * p * p]).transpose();
    patches.matmul(kernel).reshape([b, g * g, width])
}
