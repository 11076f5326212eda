//! realsyn patch (PATCHES.md): a linear layer's bias with what follows it in a
//! transformer block, `gelu(x + bias)` (and its derivative) and `x + bias + residual`,
//! each one pass over the rows where the decomposition made two (the bias's addition,
//! then the GELU or the residual addition), and a SwiGLU's gate `silu(g) * u` with
//! `[g, u] = packed + bias` and its gradient, one pass each way where the
//! decomposition made five and seven. f32 only; other types and shapes take
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
    rows_over(&x, &bias, grad, |x, b, g| g * gelu_derivative_f32(x + b))
}

pub fn bias_residual(x: FlexTensor, bias: FlexTensor, residual: FlexTensor) -> FlexTensor {
    if !fits(&x, &bias, Some(&residual)) {
        return bias_residual_from_float_ops::<Flex>(x, bias, residual);
    }
    rows_over(&x, &bias, residual, |x, b, r| (x + b) + r)
}

/// `silu(g) * u` with `[g, u] = packed + bias`: the sums and products flex's bias
/// addition, sigmoid and multiplications made, in the same order, so the same bits.
pub fn bias_swiglu(packed: FlexTensor, bias: FlexTensor) -> FlexTensor {
    if !swiglu_fits(&packed, &bias, None) {
        return bias_swiglu_from_float_ops::<Flex>(packed, bias);
    }
    let rows = SwigluRows::new(&packed, &bias);
    let (h, (p, b)) = (rows.h, rows.slices());
    let out = crate::par::collect(rows.n * h, h, |start, out| {
        for (k, row) in out.chunks_mut(h).enumerate() {
            let p = &p[(start / h + k) * 2 * h..][..2 * h];
            for (j, o) in row.iter_mut().enumerate() {
                let (g, u) = (p[j] + b[j], p[h + j] + b[h + j]);
                let silu = g * sigmoid_f32(g);
                o.write(silu * u);
            }
        }
    });
    rows.tensor(out, h)
}

/// The gradient of the packed product, as Burn's autodiff computed it from the
/// decomposition (`silu = g * sigmoid(g)`, then `silu * u`): the gate half's
/// `grad u s` plus the sigmoid's backward of `grad u g`, `(. * s) * (1 - s)`; the
/// other half's `grad * silu`. A row's two halves in one pass, each sigmoid once.
pub fn bias_swiglu_backward(packed: FlexTensor, bias: FlexTensor, grad: FlexTensor) -> FlexTensor {
    if !swiglu_fits(&packed, &bias, Some(&grad)) {
        return bias_swiglu_backward_from_float_ops::<Flex>(packed, bias, grad);
    }
    let rows = SwigluRows::new(&packed, &bias);
    let (h, (p, b)) = (rows.h, rows.slices());
    let grad = grad.to_contiguous();
    let dy = &grad.storage::<f32>()[..rows.n * h];
    let out = crate::par::collect(rows.n * 2 * h, 2 * h, |start, out| {
        for (k, row) in out.chunks_mut(2 * h).enumerate() {
            let r = start / (2 * h) + k;
            let (p, dy) = (&p[r * 2 * h..][..2 * h], &dy[r * h..][..h]);
            let (dg, dx) = row.split_at_mut(h);
            for (j, (og, ox)) in dg.iter_mut().zip(dx).enumerate() {
                let (g, u) = (p[j] + b[j], p[h + j] + b[h + j]);
                let s = sigmoid_f32(g);
                let silu_grad = dy[j] * u;
                og.write(silu_grad * s + silu_grad * g * s * (1.0 - s));
                ox.write(dy[j] * (g * s));
            }
        }
    });
    rows.tensor(out, 2 * h)
}

/// f32 throughout, an even last dimension as long as the bias, `grad` shaped like
/// `packed` with that dimension halved.
fn swiglu_fits(packed: &FlexTensor, bias: &FlexTensor, grad: Option<&FlexTensor>) -> bool {
    let shape = packed.shape();
    let last = shape.num_dims().saturating_sub(1);
    let halved = || {
        let mut s = shape.clone();
        s[last] /= 2;
        s
    };
    fits(packed, bias, None)
        && shape[last] % 2 == 0
        && grad.is_none_or(|g| g.dtype() == DType::F32 && g.shape() == halved())
}

/// A SwiGLU op's inputs made contiguous once.
struct SwigluRows {
    /// `packed`'s shape, its rows, and half a row's length.
    shape: Shape,
    n: usize,
    h: usize,
    packed: FlexTensor,
    bias: FlexTensor,
}

impl SwigluRows {
    fn new(packed: &FlexTensor, bias: &FlexTensor) -> Self {
        let shape: Shape = packed.shape();
        let h = bias.shape().num_elements() / 2;
        Self {
            n: shape.num_elements() / (2 * h),
            h,
            shape,
            packed: packed.to_contiguous(),
            bias: bias.to_contiguous(),
        }
    }

    /// The packed product and the bias as f32 slices.
    fn slices(&self) -> (&[f32], &[f32]) {
        let (n, h) = (self.n, self.h);
        (
            &self.packed.storage::<f32>()[..n * 2 * h],
            &self.bias.storage::<f32>()[..2 * h],
        )
    }

    /// `data` as a tensor of `packed`'s shape with a last dimension of `last`.
    fn tensor(&self, data: alloc::vec::Vec<f32>, last: usize) -> FlexTensor {
        let mut shape = self.shape.clone();
        let d = shape.num_dims() - 1;
        shape[d] = last;
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(shape),
            DType::F32,
        )
    }
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

/// [`rows`]' result written over `b` when this op holds its only handle (the
/// incoming gradient in a backward pass, usually; twelfth round): these passes are
/// bound by memory, and writing where `b` was read spares a new buffer and one
/// more stream. Otherwise into a new buffer, as `rows`.
fn rows_over(
    a: &FlexTensor,
    bias: &FlexTensor,
    b: FlexTensor,
    op: impl Fn(f32, f32, f32) -> f32 + Sync + Send,
) -> FlexTensor {
    let mut b = b.into_contiguous();
    if !b.is_unique() {
        return rows(a, bias, &b, op);
    }
    let (a, bias) = (a.to_contiguous(), bias.to_contiguous());
    let d = bias.shape().num_elements();
    let n = a.shape().num_elements();
    crate::par::update_rows(
        &mut b.storage_mut::<f32>()[..n],
        &a.storage::<f32>()[..n],
        &bias.storage::<f32>()[..d],
        op,
    );
    b
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
