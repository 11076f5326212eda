//! timm's `EvaAttention`, `SwiGLU` and `EvaBlock` / `EvaBlockPostNorm`, as the
//! EVA02-CLIP towers use them.

use burn::module::{Initializer, Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::config::EvaDesign;
use crate::common::rotary::RotaryTables;
use crate::common::transformer::{
    Activation, Mlp, float, from_float, linear_2d, linear_2d_residual, product_2d,
};

/// timm's `LayerNorm` default (open_clip's own towers use 1e-5).
pub const EVA_LN_EPS: f64 = 1e-6;

pub fn eva_layer_norm<B: Backend>(width: usize, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(width)
        .with_epsilon(EVA_LN_EPS)
        .init(device)
}

/// A Linear initialised as timm's `Eva._init_weights` (trunc-normal std 0.02, zero bias).
pub fn eva_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device)
}

/// q, k and v's projections as one `[width, 3 width]` matrix (Burn's `[in, out]`)
/// with learned q and v biases; k's bias is a fixed zero in timm (a constant added to
/// every key cancels in the softmax). timm's fused layout (`qkv.weight`, `q_bias`,
/// `v_bias`) and its separate one (`q_proj`, `k_proj`, `v_proj`) hold the same
/// numbers under different keys (`weights.rs` maps both onto this), so a step
/// multiplies by the matrix as it is: three weights would be joined every step (on
/// CubeCL 3 slice-assigns per block, and backward 3 strided gradients copied).
#[derive(Module, Debug)]
pub struct Qkv<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub q_bias: Param<Tensor<B, 1>>,
    pub v_bias: Param<Tensor<B, 1>>,
}

#[derive(Module, Debug)]
pub struct EvaAttention<B: Backend> {
    pub qkv: Qkv<B>,
    /// Which of timm's key layouts the weights use: fused (`qkv.weight`) or separate
    /// (`q_proj`, `k_proj`, `v_proj`).
    pub qkv_fused: bool,
    /// Sub-LN (`scale_attn_inner`): a LayerNorm on the merged heads before `proj`.
    pub norm: Option<LayerNorm<B>>,
    pub proj: Linear<B>,
    pub heads: usize,
}

impl<B: Backend> EvaAttention<B> {
    pub fn new(width: usize, heads: usize, design: &EvaDesign, device: &B::Device) -> Self {
        let qkv = Qkv {
            weight: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([width, 3 * width], device),
            q_bias: Initializer::Zeros.init([width], device),
            v_bias: Initializer::Zeros.init([width], device),
        };
        Self {
            qkv,
            qkv_fused: design.qkv_fused,
            norm: design.sub_ln.then(|| eva_layer_norm(width, device)),
            proj: eva_linear(width, width, true, device),
            heads,
        }
    }

    /// `x`: `[batch, tokens, width]` -> same shape.
    pub fn forward(&self, x: Tensor<B, 3>, rope: Option<&RotaryTables<B>>) -> Tensor<B, 3> {
        linear_2d(&self.proj, self.heads_out(x, rope))
    }

    /// `residual + forward(x)`, the residual added with `proj`'s bias.
    pub fn forward_residual(
        &self,
        x: Tensor<B, 3>,
        rope: Option<&RotaryTables<B>>,
        residual: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        linear_2d_residual(&self.proj, self.heads_out(x, rope), residual)
    }

    /// The heads' outputs merged (and sub-LN's norm), before the output projection.
    fn heads_out(&self, x: Tensor<B, 3>, rope: Option<&RotaryTables<B>>) -> Tensor<B, 3> {
        let [b, n, w] = x.dims();
        let h = self.heads;
        // ONE [w, 3w] GEMM with bias (q, 0, v), as the ViT's packed in_proj, and the
        // permuted copy below leaves q, k and v contiguous for the attention kernel
        // rather than strided per-head views. The key's zero bias is in the weights'
        // dtype (bf16 under mixed precision).
        let zeros = Tensor::zeros([w], (&x.device(), x.dtype()));
        let bias = Tensor::cat(vec![self.qkv.q_bias.val(), zeros, self.qkv.v_bias.val()], 0);
        let weight = self.qkv.weight.val();
        let qkv = (x.reshape([b * n, w]).matmul(weight) + bias.unsqueeze_dim(0))
            .reshape([b, n, 3, h, w / h])
            .permute([2, 0, 3, 1, 4])
            .reshape([3 * b, h, n, w / h]);
        // q and k lie end to end (`qkv`'s first 2b rows): one rotation for both, where
        // one each was two kernels forward.
        let (qk, v) = (qkv.clone().slice([0..2 * b]), qkv.slice([2 * b..3 * b]));
        let qk = match rope {
            Some(r) => r.apply(qk),
            None => qk,
        };
        let (q, k) = (qk.clone().slice([0..b]), qk.slice([b..2 * b]));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let out = attention(q, k, v, None, None, options)
            .swap_dims(1, 2)
            .reshape([b, n, w]);
        match &self.norm {
            Some(norm) => norm.forward(out),
            None => out,
        }
    }
}

/// timm's `SwiGLU` with `norm_layer`: `fc2(norm(silu(fc1_g(x)) * fc1_x(x)))`.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    /// `fc1_g` and `fc1_x` as one `[width, 2 hidden]` layer, the gate's columns first
    /// (`weights.rs` stacks timm's two): one product each way where two were, and the
    /// gate reads the packed product as it is (`ModuleOps::bias_swiglu`).
    pub fc1: Linear<B>,
    pub norm: LayerNorm<B>,
    pub fc2: Linear<B>,
}

impl<B: Backend> SwiGlu<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        linear_2d(&self.fc2, self.hidden(x))
    }

    /// `residual + forward(x)`, the residual added with `fc2`'s bias.
    pub fn forward_residual(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        linear_2d_residual(&self.fc2, self.hidden(x), residual)
    }

    /// `norm(silu(fc1_g(x)) * fc1_x(x))`, before `fc2`. The biases, the SiLU and the
    /// gating are one op (`ModuleOps::bias_swiglu`: one pass each way where the
    /// decomposition is a bias addition, two slices, a sigmoid and two products
    /// forward and seven kernels backward).
    fn hidden(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, _] = x.dims();
        // timm's SwiGLU layers always have biases (`EvaMlp::new` makes them so).
        let bias = self.fc1.bias.as_ref().expect("SwiGLU's fc1 has a bias");
        let packed = product_2d(&self.fc1, x);
        let hidden = packed.dims()[1] / 2;
        let gated = B::bias_swiglu(float(packed), float(bias.val()));
        self.norm
            .forward(from_float::<B, 2>(gated).reshape([b, n, hidden]))
    }
}

#[derive(Module, Debug)]
pub enum EvaMlp<B: Backend> {
    /// EVA02-B/L.
    SwiGlu(SwiGlu<B>),
    /// EVA02-E: timm's `Mlp` (`fc1`, exact GELU, `fc2`), the same computation as
    /// open_clip's ViT MLP.
    Gelu(Mlp<B>),
}

impl<B: Backend> EvaMlp<B> {
    fn new(width: usize, hidden: usize, design: &EvaDesign, device: &B::Device) -> Self {
        if design.swiglu {
            EvaMlp::SwiGlu(SwiGlu {
                fc1: eva_linear(width, 2 * hidden, true, device),
                norm: eva_layer_norm(hidden, device),
                fc2: eva_linear(hidden, width, true, device),
            })
        } else {
            EvaMlp::Gelu(Mlp {
                c_fc: eva_linear(width, hidden, true, device),
                c_proj: eva_linear(hidden, width, true, device),
                activation: Activation::Gelu,
            })
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            EvaMlp::SwiGlu(m) => m.forward(x),
            EvaMlp::Gelu(m) => m.forward(x),
        }
    }

    fn forward_residual(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            EvaMlp::SwiGlu(m) => m.forward_residual(x, residual),
            EvaMlp::Gelu(m) => m.forward_residual(x, residual),
        }
    }
}

#[derive(Module, Debug)]
pub struct EvaBlock<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attn: EvaAttention<B>,
    pub norm2: LayerNorm<B>,
    pub mlp: EvaMlp<B>,
    /// `x + norm(f(x))` (EVA02-E) instead of `x + f(norm(x))`.
    pub post_norm: bool,
}

impl<B: Backend> EvaBlock<B> {
    pub fn new(
        width: usize,
        heads: usize,
        mlp_hidden: usize,
        design: &EvaDesign,
        device: &B::Device,
    ) -> Self {
        Self {
            norm1: eva_layer_norm(width, device),
            attn: EvaAttention::new(width, heads, design, device),
            norm2: eva_layer_norm(width, device),
            mlp: EvaMlp::new(width, mlp_hidden, design, device),
            post_norm: design.post_norm,
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>, rope: Option<&RotaryTables<B>>) -> Tensor<B, 3> {
        if self.post_norm {
            let x = x.clone() + self.norm1.forward(self.attn.forward(x, rope));
            x.clone() + self.norm2.forward(self.mlp.forward(x))
        } else {
            // Each branch's last bias and the skip path added by one op (`bias_residual`).
            let x = self
                .attn
                .forward_residual(self.norm1.forward(x.clone()), rope, x);
            self.mlp.forward_residual(self.norm2.forward(x.clone()), x)
        }
    }
}
