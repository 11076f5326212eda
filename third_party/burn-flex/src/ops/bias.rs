//! realsyn patch (PATCHES.md): a linear layer's bias with what follows it in a
//! transformer block, `gelu(x + bias)` (and its derivative) and `x + bias + residual`,
//! each one pass over the rows where the decomposition made two (the bias's addition,
//! then the GELU or the residual addition), and a SwiGLU's gate
//! `silu(gate + gate_bias) * (x + x_bias)` and its two gradients, one pass each way
//! where the decomposition made five and seven. f32 only; other types and shapes take
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
    if !swiglu_fits(&gate, &gate_bias, &x, &x_bias, None) {
        return bias_swiglu_from_float_ops::<Flex>(gate, gate_bias, x, x_bias);
    }
    let rows = SwigluRows::new(&gate, &gate_bias, &x, &x_bias, None);
    let at = rows.at();
    let out = crate::par::collect(rows.n, rows.h, |start, out| {
        for (k, o) in out.iter_mut().enumerate() {
            let (g, u, _) = at(start + k);
            let silu = g * sigmoid_f32(g);
            o.write(silu * u);
        }
    });
    rows.tensor(out)
}

/// The gradients of the gate and of x, as Burn's autodiff computed them from the
/// decomposition (`silu = g * sigmoid(g)`, then `silu * u`): x's `grad * silu`; the
/// gate's `grad u s` plus the sigmoid's backward of `grad u g`, `(. * s) * (1 - s)`.
/// Both in one pass, each sigmoid computed once.
pub fn bias_swiglu_backward(
    gate: FlexTensor,
    gate_bias: FlexTensor,
    x: FlexTensor,
    x_bias: FlexTensor,
    grad: FlexTensor,
) -> (FlexTensor, FlexTensor) {
    if !swiglu_fits(&gate, &gate_bias, &x, &x_bias, Some(&grad)) {
        return bias_swiglu_backward_from_float_ops::<Flex>(gate, gate_bias, x, x_bias, grad);
    }
    let rows = SwigluRows::new(&gate, &gate_bias, &x, &x_bias, Some(&grad));
    let at = rows.at();
    let (gate_grad, x_grad) = crate::par::collect2(rows.n, rows.h, |start, dg, dx| {
        for (k, (og, ox)) in dg.iter_mut().zip(dx).enumerate() {
            let (g, u, dy) = at(start + k);
            let s = sigmoid_f32(g);
            let silu_grad = dy * u;
            og.write(silu_grad * s + silu_grad * g * s * (1.0 - s));
            ox.write(dy * (g * s));
        }
    });
    (rows.tensor(gate_grad), rows.tensor(x_grad))
}

/// f32 throughout, `x` (and `grad`) shaped like the gate, each bias as long as a row.
fn swiglu_fits(
    gate: &FlexTensor,
    gate_bias: &FlexTensor,
    x: &FlexTensor,
    x_bias: &FlexTensor,
    grad: Option<&FlexTensor>,
) -> bool {
    fits(gate, gate_bias, Some(x)) && fits(x, x_bias, grad)
}

/// A SwiGLU op's inputs made contiguous once, read element by element.
struct SwigluRows {
    shape: Shape,
    /// Elements, and the row length (the biases').
    n: usize,
    h: usize,
    gate: FlexTensor,
    gate_bias: FlexTensor,
    x: FlexTensor,
    x_bias: FlexTensor,
    grad: Option<FlexTensor>,
}

impl SwigluRows {
    fn new(
        gate: &FlexTensor,
        gate_bias: &FlexTensor,
        x: &FlexTensor,
        x_bias: &FlexTensor,
        grad: Option<&FlexTensor>,
    ) -> Self {
        let shape: Shape = gate.shape();
        Self {
            n: shape.num_elements(),
            h: gate_bias.shape().num_elements(),
            shape,
            gate: gate.to_contiguous(),
            gate_bias: gate_bias.to_contiguous(),
            x: x.to_contiguous(),
            x_bias: x_bias.to_contiguous(),
            grad: grad.map(|g| g.to_contiguous()),
        }
    }

    /// Element `i`'s `(gate + gate_bias, x + x_bias, grad)`, the gradient 0 when absent.
    fn at(&self) -> impl Fn(usize) -> (f32, f32, f32) + Sync + '_ {
        let (n, h) = (self.n, self.h);
        let (gs, gb) = (
            &self.gate.storage::<f32>()[..n],
            &self.gate_bias.storage::<f32>()[..h],
        );
        let (xs, xb) = (
            &self.x.storage::<f32>()[..n],
            &self.x_bias.storage::<f32>()[..h],
        );
        let dys = self.grad.as_ref().map(|g| &g.storage::<f32>()[..n]);
        move |i| {
            let j = i % h;
            (gs[i] + gb[j], xs[i] + xb[j], dys.map_or(0.0, |d| d[i]))
        }
    }

    fn tensor(&self, data: alloc::vec::Vec<f32>) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(self.shape.clone()),
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
