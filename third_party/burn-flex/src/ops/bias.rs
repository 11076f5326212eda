//! realsyn patch (PATCHES.md): a linear layer's bias with what follows it in a
//! transformer block, `gelu(x + bias)` (and its derivative) and `x + bias + residual`,
//! each one pass over the rows where the decomposition made two (the bias's addition,
//! then the GELU or the residual addition). f32 only; other types and shapes take
//! the trait's defaults.

use burn_backend::ops::linear::{
    bias_gelu_backward_from_float_ops, bias_gelu_from_float_ops, bias_residual_from_float_ops,
};
use burn_backend::{DType, TensorMetadata};
use burn_std::{Bytes, Shape};

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
