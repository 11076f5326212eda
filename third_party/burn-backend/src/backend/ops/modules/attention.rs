use core::f32;
#[allow(unused_imports)]
use num_traits::Float as _;

use burn_std::Shape;

use crate::{
    Backend, TensorMetadata, get_device_settings,
    ops::AttentionModuleOptions,
    tensor::{BoolTensor, FloatTensor},
};

/// Computes softmax(QKᵗ * scale) · V using separate kernels.
/// Serves as a fallback when FlashAttention is not used.
pub fn attention_fallback<B: Backend>(
    query: FloatTensor<B>,
    key: FloatTensor<B>,
    value: FloatTensor<B>,
    mask: Option<BoolTensor<B>>,
    attn_bias: Option<FloatTensor<B>>,
    options: AttentionModuleOptions,
) -> FloatTensor<B> {
    let weights = attention_weights::<B>(query, key, mask, attn_bias, options);
    // Context: S · V
    B::float_matmul(weights.softmax, value)
}

/// The attention weights `S = softmax(A)` of [attention_fallback], with what the
/// backward pass needs besides them (realsyn patch, PATCHES.md: one function for the
/// forward and for [attention_backward_from_float_ops]'s recomputation).
struct AttentionWeights<B: Backend> {
    softmax: FloatTensor<B>,
    /// `tanh(scores / softcap)` when a softcap is set.
    softcap_tanh: Option<FloatTensor<B>>,
    scale: f64,
    /// Whether the scale was applied by the softmax op (so its backward applies it
    /// too) rather than to the scores before it.
    scale_in_softmax: bool,
}

fn attention_weights<B: Backend>(
    query: FloatTensor<B>,
    key: FloatTensor<B>,
    mask: Option<BoolTensor<B>>,
    attn_bias: Option<FloatTensor<B>>,
    options: AttentionModuleOptions,
) -> AttentionWeights<B> {
    if let Some(softcap) = options.softcap {
        assert!(softcap > 0.0, "softcap must be positive, got {softcap}");
    }

    // Attention scores: A = QKᵗ * scale
    let query_shape = query.shape().dims::<4>();
    let scale = options
        .scale
        .unwrap_or_else(|| 1.0 / (*query_shape.last().unwrap() as f64).sqrt());
    let [.., seq_q, _] = query_shape;
    let seq_k = key.shape().dims::<4>()[2];
    let transposed_key = B::float_transpose(key);
    let qk = B::float_matmul(query, transposed_key);
    // Without a softcap or a bias nothing comes between the scaling and the softmax
    // but masks (-inf stays -inf under a positive scale): the softmax op scales, and
    // hides the causal keys, itself (realsyn patch, PATCHES.md: on a GPU backend a
    // scaling, and a causal mask's comparison, offset and fill, are kernels each).
    let scale_in_softmax = options.softcap.is_none() && attn_bias.is_none() && scale > 0.0;
    let causal_in_softmax = scale_in_softmax && options.is_causal && seq_q <= seq_k;
    let attention_scores = if scale_in_softmax {
        qk
    } else {
        B::float_mul_scalar(qk, scale.into())
    };

    // Softcap: softcap * tanh(scores / softcap)
    // Applied to raw logits before any -inf masking, so that tanh does not
    // map -inf to a finite value (which would break masking semantics).
    let (attention_scores, softcap_tanh) = if let Some(softcap) = options.softcap {
        let scaled = B::float_div_scalar(attention_scores, softcap.into());
        let tanh = B::float_tanh(scaled);
        (
            B::float_mul_scalar(tanh.clone(), softcap.into()),
            Some(tanh),
        )
    } else {
        (attention_scores, None)
    };

    // Whether a row can be all -inf (realsyn patch, PATCHES.md): only through a mask,
    // causality or a bias (which may carry -inf); else the clamps below are no-ops.
    let maskable = mask.is_some() || options.is_causal || attn_bias.is_some();

    // Bool masking
    let attention_scores = if let Some(mask) = mask {
        B::float_mask_fill(attention_scores, mask, f32::NEG_INFINITY.into())
    } else {
        attention_scores
    };

    // Causal masking: mask positions where col > row (future positions)
    let attention_scores = if options.is_causal && !causal_in_softmax {
        let causal_mask = build_causal_mask::<B>(&attention_scores);
        B::float_mask_fill(attention_scores, causal_mask, f32::NEG_INFINITY.into())
    } else {
        attention_scores
    };

    // Additive bias (ALiBi, relative position biases, etc.)
    let attention_scores = if let Some(bias) = attn_bias {
        B::float_add(attention_scores, bias)
    } else {
        attention_scores
    };

    // S = softmax(A), NaN-safe for fully masked rows (attention_softmax_from_float_ops).
    let softmax = match scale_in_softmax {
        true => B::attention_softmax(attention_scores, scale, causal_in_softmax, maskable),
        false => B::attention_softmax(attention_scores, 1.0, false, maskable),
    };

    AttentionWeights {
        softmax,
        softcap_tanh,
        scale,
        scale_in_softmax,
    }
}

/// [`ModuleOps::attention_softmax`](crate::ops::ModuleOps::attention_softmax) from the
/// backend's float ops, the trait's default (realsyn patch, PATCHES.md).
pub fn attention_softmax_from_float_ops<B: Backend>(
    scores: FloatTensor<B>,
    scale: f64,
    causal: bool,
    maskable: bool,
) -> FloatTensor<B> {
    let scores = if scale == 1.0 {
        scores
    } else {
        B::float_mul_scalar(scores, scale.into())
    };
    let scores = match causal {
        true => {
            let causal_mask = build_causal_mask::<B>(&scores);
            B::float_mask_fill(scores, causal_mask, f32::NEG_INFINITY.into())
        }
        false => scores,
    };
    // NaN-safe softmax:
    // When all positions in a row are masked (-inf), naive softmax has two NaN paths:
    //   (1) max is -inf, so the shift -inf - (-inf) = NaN;
    //   (2) after fixing (1), all exp values are 0, so sum is 0 and 0/0 = NaN.
    // Clamping max to finfo.min (most negative finite value) and sum to finfo.min_positive
    // (smallest positive normal) avoids both, yielding 0 for fully-masked rows.
    // Without a mask the row maximum is finite and the sum at least 1: the clamps
    // are skipped, four kernels fewer per attention on a GPU backend (a clamp is a
    // compare and a masked fill there), and the result is the same.
    let last = scores.shape().num_dims() - 1;
    let finfo = scores.dtype().finfo().expect("float tensor");
    let max_per_dim = B::float_max_dim(scores.clone(), last);
    let max_per_dim = if maskable {
        B::float_clamp_min(max_per_dim, finfo.min.into())
    } else {
        max_per_dim
    };
    let minus_max = B::float_sub(scores, max_per_dim);
    let numerator = B::float_exp(minus_max);
    let sum_exp = B::float_sum_dim(numerator.clone(), last);
    let sum_exp = if maskable {
        B::float_clamp_min(sum_exp, finfo.min_positive.into())
    } else {
        sum_exp
    };
    B::float_div(numerator, sum_exp)
}

/// [`ModuleOps::attention_softmax_backward`](crate::ops::ModuleOps::attention_softmax_backward)
/// from the backend's float ops, the trait's default (realsyn patch, PATCHES.md).
pub fn attention_softmax_backward_from_float_ops<B: Backend>(
    softmax: FloatTensor<B>,
    softmax_grad: FloatTensor<B>,
    scale: f64,
) -> FloatTensor<B> {
    let last = softmax.shape().num_dims() - 1;
    let row_dot = B::float_sum_dim(B::float_mul(softmax.clone(), softmax_grad.clone()), last);
    let grad = B::float_mul(softmax, B::float_sub(softmax_grad, row_dot));
    if scale == 1.0 {
        grad
    } else {
        B::float_mul_scalar(grad, scale.into())
    }
}

/// Gradients of [attention](crate::ops::ModuleOps::attention) (realsyn patch, PATCHES.md).
pub struct AttentionBackward<B: Backend> {
    /// Gradient of the query, `[batch_size, num_heads, seq_len_q, head_dim]`.
    pub query_grad: FloatTensor<B>,
    /// Gradient of the key, `[batch_size, num_heads, seq_len_k, head_dim]`.
    pub key_grad: FloatTensor<B>,
    /// Gradient of the value, `[batch_size, num_heads, seq_len_k, val_dim]`.
    pub value_grad: FloatTensor<B>,
    /// Gradient of the additive bias, shaped like it; `None` without a bias.
    pub bias_grad: Option<FloatTensor<B>>,
}

/// [`ModuleOps::attention_backward`](crate::ops::ModuleOps::attention_backward) from the
/// backend's float ops, as FlashAttention's backward does it: the weights
/// `S = softmax(A)` are recomputed from the query and key (nothing of size
/// `seq_len_q x seq_len_k` is kept from the forward pass), then with `G` the output
/// gradient
/// `dV = Sᵗ G`, `dS = G Vᵗ`, `dA = S ⊙ (dS - rowsum(S ⊙ dS))` (the bias gradient),
/// through the softcap `dA ⊙ (1 - tanh²)`, and `dQ = dA K * scale`,
/// `dK = dAᵗ Q * scale`. Masked positions have `S = 0` and get no gradient.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_from_float_ops<B: Backend>(
    query: FloatTensor<B>,
    key: FloatTensor<B>,
    value: FloatTensor<B>,
    mask: Option<BoolTensor<B>>,
    attn_bias: Option<FloatTensor<B>>,
    options: AttentionModuleOptions,
    output_grad: FloatTensor<B>,
) -> AttentionBackward<B> {
    let bias_shape = attn_bias.as_ref().map(|bias| bias.shape());
    let weights = attention_weights::<B>(query.clone(), key.clone(), mask, attn_bias, options);
    let softmax = weights.softmax;

    let value_grad = B::float_matmul(B::float_transpose(softmax.clone()), output_grad.clone());
    let softmax_grad = B::float_matmul(output_grad, B::float_transpose(value));
    // The softmax op's scale, when it took it, is in its gradient already.
    let op_scale = if weights.scale_in_softmax {
        weights.scale
    } else {
        1.0
    };
    let scores_grad = B::attention_softmax_backward(softmax, softmax_grad, op_scale);

    // The bias is added to the scores as they enter the softmax: its gradient is
    // `dA`, summed over the dimensions along which it was broadcast.
    let bias_grad = bias_shape.map(|shape| {
        let grad_shape = scores_grad.shape();
        let mut grad = scores_grad.clone();
        for dim in 0..grad_shape.num_dims() {
            if shape[dim] == 1 && grad_shape[dim] != 1 {
                grad = B::float_sum_dim(grad, dim);
            }
        }
        grad
    });

    let scores_grad = match weights.softcap_tanh {
        Some(tanh) => {
            let one_minus_tanh_sq =
                B::float_add_scalar(B::float_neg(B::float_mul(tanh.clone(), tanh)), 1f32.into());
            B::float_mul(scores_grad, one_minus_tanh_sq)
        }
        None => scores_grad,
    };
    let qk_grad = match weights.scale_in_softmax {
        true => scores_grad,
        false => B::float_mul_scalar(scores_grad, weights.scale.into()),
    };
    let query_grad = B::float_matmul(qk_grad.clone(), key);
    let key_grad = B::float_matmul(B::float_transpose(qk_grad), query);

    AttentionBackward {
        query_grad,
        key_grad,
        value_grad,
        bias_grad,
    }
}

/// Builds a causal (upper-triangular) bool mask where `true` means "mask this position".
/// Shape: [batch_size, num_heads, seq_q, seq_k], masking positions where col > row.
fn build_causal_mask<B: Backend>(attention_scores: &FloatTensor<B>) -> BoolTensor<B> {
    let device = B::float_device(attention_scores);
    let scores_shape = attention_scores.shape().dims::<4>();
    let [batch_size, num_heads, seq_q, seq_k] = scores_shape;
    let settings = get_device_settings::<B>(&device);

    // row indices [seq_q, 1] and col indices [1, seq_k]
    // Offset col indices so that the causal boundary aligns at the bottom-right corner,
    // which handles cross-attention (seq_k > seq_q) correctly.
    let offset = seq_k as i64 - seq_q as i64;
    let rows = B::int_reshape(
        B::int_arange(0..seq_q as i64, &device, settings.int_dtype),
        Shape::new([seq_q, 1]),
    );
    let cols = B::int_reshape(
        B::int_arange(0..seq_k as i64, &device, settings.int_dtype),
        Shape::new([1, seq_k]),
    );

    // mask where col > row + offset (upper triangle)
    let rows_shifted = B::int_add_scalar(rows, offset.into());
    let mask_2d = B::int_lower(rows_shifted, cols, settings.bool_dtype);

    // Reshape to [1, 1, seq_q, seq_k] then expand to [batch_size, num_heads, seq_q, seq_k]
    let mask_4d = B::bool_reshape(mask_2d, Shape::new([1, 1, seq_q, seq_k]));
    B::bool_expand(mask_4d, Shape::new([batch_size, num_heads, seq_q, seq_k]))
}
