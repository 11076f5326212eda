//! realsyn patch (PATCHES.md): a linear layer's bias with what follows it in a
//! transformer block, `gelu(x + bias)` (and its derivative) and `x + bias + residual`,
//! each one pass over the rows where the decomposition made two (the bias's addition,
//! then the GELU or the residual addition). f32 only; other types and shapes take
//! the trait's defaults.

use burn_backend::ops::linear::{
    bias_gelu_backward_from_float_ops, bias_gelu_from_float_ops, bias_residual_from_float_ops,
    bias_swiglu_backward_from_float_ops, bias_swiglu_from_float_ops,
};
use burn_backend::{DType, TensorMetadata};
use burn_std::{Bytes, Shape};

use crate::ops::activation::sigmoid_f32;
use crate::ops::unary::{erf_poly_f32, exp_poly_f32};
use crate::{Flex, FlexTensor, Layout};

/// The exact GELU in f32, flex's `gelu` (the vectorisable erf).
#[inline(always)]
pub(crate) fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_poly_f32(x / core::f32::consts::SQRT_2))
}

/// The exact GELU's derivative in f32, flex's `gelu_backward`'s.
#[inline(always)]
pub(crate) fn gelu_derivative_f32(x: f32) -> f32 {
    let inv_sqrt_2pi: f32 = 1.0 / (2.0 * core::f32::consts::PI).sqrt();
    let cdf = 0.5 * (1.0 + erf_poly_f32(x / core::f32::consts::SQRT_2));
    cdf + x * (inv_sqrt_2pi * exp_poly_f32(-0.5 * x * x))
}

pub fn bias_gelu(x: FlexTensor, bias: FlexTensor) -> FlexTensor {
    if !fits(&x, &bias, None) {
        return bias_gelu_from_float_ops::<Flex>(x, bias);
    }
    // `a` read twice: one loop for the three forms.
    rows(&x, &bias, &x, |x, b, _| gelu_f32(x + b))
}

pub fn bias_gelu_backward(x: FlexTensor, bias: FlexTensor, grad: FlexTensor) -> FlexTensor {
    if !fits(&x, &bias, Some(&grad)) {
        return bias_gelu_backward_from_float_ops::<Flex>(x, bias, grad);
    }
    rows(&x, &bias, &grad, |x, b, g| g * gelu_derivative_f32(x + b))
}

pub fn bias_residual(x: FlexTensor, bias: FlexTensor, residual: FlexTensor) -> FlexTensor {
    if !fits(&x, &bias, Some(&residual)) {
        return bias_residual_from_float_ops::<Flex>(x, bias, residual);
    }
    rows(&x, &bias, &residual, |x, b, r| (x + b) + r)
}

/// `silu(gate + gate_bias) * (x + x_bias)`: the products and sums flex's sigmoid,
/// multiplications and additions made, in the same order, so the same bits.
pub fn bias_swiglu(
    gate: FlexTensor,
    gate_bias: FlexTensor,
    x: FlexTensor,
    x_bias: FlexTensor,
) -> FlexTensor {
    if !(fits(&gate, &gate_bias, Some(&x)) && fits(&x, &x_bias, None)) {
        return bias_swiglu_from_float_ops::<Flex>(gate, gate_bias, x, x_bias);
    }
    swiglu_rows(&gate, &gate_bias, &x, &x_bias, None, |g, u, _| {
        let silu = g * sigmoid_f32(g);
        silu * u
    })
}

/// The gradients of the gate and of x, as Burn's autodiff computed them from the
/// decomposition (`silu = g * sigmoid(g)`, then `silu * u`): x's `grad * silu`; the
/// gate's `grad u s` plus the sigmoid's backward of `grad u g`, `(. * s) * (1 - s)`.
pub fn bias_swiglu_backward(
    gate: FlexTensor,
    gate_bias: FlexTensor,
    x: FlexTensor,
    x_bias: FlexTensor,
    grad: FlexTensor,
) -> (FlexTensor, FlexTensor) {
    if !(fits(&gate, &gate_bias, Some(&x))
        && fits(&x, &x_bias, None)
        && fits(&gate, &gate_bias, Some(&grad)))
    {
        return bias_swiglu_backward_from_float_ops::<Flex>(gate, gate_bias, x, x_bias, grad);
    }
    let gate_grad = swiglu_rows(&gate, &gate_bias, &x, &x_bias, Some(&grad), |g, u, dy| {
        let s = sigmoid_f32(g);
        let silu_grad = dy * u;
        silu_grad * s + silu_grad * g * s * (1.0 - s)
    });
    let x_grad = swiglu_rows(&gate, &gate_bias, &x, &x_bias, Some(&grad), |g, _, dy| {
        dy * (g * sigmoid_f32(g))
    });
    (gate_grad, x_grad)
}

/// `out[r, j] = op(gate[r, j] + gate_bias[j], x[r, j] + x_bias[j], grad[r, j])` (`grad`
/// read as 0 when absent), rows split over the threads.
fn swiglu_rows(
    gate: &FlexTensor,
    gate_bias: &FlexTensor,
    x: &FlexTensor,
    x_bias: &FlexTensor,
    grad: Option<&FlexTensor>,
    op: impl Fn(f32, f32, f32) -> f32 + Sync + Send,
) -> FlexTensor {
    let shape: Shape = gate.shape();
    let n = shape.num_elements();
    let h = gate_bias.shape().num_elements();
    let (gate, gate_bias) = (gate.to_contiguous(), gate_bias.to_contiguous());
    let (x, x_bias) = (x.to_contiguous(), x_bias.to_contiguous());
    let grad = grad.map(|g| g.to_contiguous());
    let (gs, gb) = (
        &gate.storage::<f32>()[..n],
        &gate_bias.storage::<f32>()[..h],
    );
    let (xs, xb) = (&x.storage::<f32>()[..n], &x_bias.storage::<f32>()[..h]);
    let dys = grad.as_ref().map(|g| &g.storage::<f32>()[..n]);
    let out = crate::par::collect(n, h, |start, out| {
        for (k, o) in out.iter_mut().enumerate() {
            let (i, j) = (start + k, k % h);
            let dy = dys.map_or(0.0, |d| d[i]);
            o.write(op(gs[i] + gb[j], xs[i] + xb[j], dy));
        }
    });
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// f32 throughout, a bias as long as `x`'s rows, `other` shaped like `x`.
fn fits(x: &FlexTensor, bias: &FlexTensor, other: Option<&FlexTensor>) -> bool {
    let shape = x.shape();
    let d = shape
        .num_dims()
        .checked_sub(1)
        .map_or(0, |last| shape[last]);
    d > 0
        && x.dtype() == DType::F32
        && bias.dtype() == DType::F32
        && bias.shape().num_elements() == d
        && other.is_none_or(|t| t.dtype() == DType::F32 && t.shape() == shape)
}

fn rows(
    a: &FlexTensor,
    bias: &FlexTensor,
    b: &FlexTensor,
    op: impl Fn(f32, f32, f32) -> f32 + Sync + Send,
) -> FlexTensor {
    let shape: Shape = a.shape();
    let n = shape.num_elements();
    let (a, bias, b) = (a.to_contiguous(), bias.to_contiguous(), b.to_contiguous());
    let d = bias.shape().num_elements();
    let out = crate::par::map_rows(
        &a.storage::<f32>()[..n],
        &bias.storage::<f32>()[..d],
        &b.storage::<f32>()[..n],
        op,
    );
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(shape),
        DType::F32,
    )
}
