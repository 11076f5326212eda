//! realsyn patch (PATCHES.md): layer norm's backward pass as one kernel.
//!
//! Under autodiff the patched `burn-autodiff` records layer norm as one node and
//! calls `ModuleOps::layer_norm_backward`. Here, per row: the statistics again
//! (two passes, as the forward's accuracy needs), then one pass that sums
//! `g = grad * gamma` and `g * x_hat` and adds the row's share of the `gamma` and
//! `beta` gradients, then one pass writing
//! `x_grad = rstd * (g - mean(g) - x_hat * mean(g * x_hat))`, added to the gradient
//! the input already has when the caller passes it (`x_grad_so_far`).
//! Rows are split over the rayon pool in blocks; each block sums its own `gamma`
//! and `beta` gradients, and the blocks' sums are added in block order (the result
//! does not depend on the number of threads).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::TensorMetadata;
use burn_backend::ops::LayerNormBackward;
use burn_backend::ops::layer_norm_backward_from_float_ops;
use burn_std::{Bytes, Shape};

use crate::{Flex, FlexTensor, Layout};

/// Rows per task: 64 rows of 768 are 192 KB per operand.
const ROWS_PER_BLOCK: usize = 64;
/// Accumulator lanes: the loops below keep this many partial sums so that they
/// vectorise without reassociating a single scalar sum.
const LANES: usize = 16;

pub fn layer_norm_backward(
    tensor: FlexTensor,
    gamma: FlexTensor,
    epsilon: f64,
    output_grad: FlexTensor,
    x_grad_so_far: Option<FlexTensor>,
) -> LayerNormBackward<Flex> {
    let all_f32 = [&tensor, &gamma, &output_grad]
        .into_iter()
        .chain(&x_grad_so_far)
        .all(|t| t.dtype() == DType::F32);
    let shape = tensor.shape();
    let d = shape
        .num_dims()
        .checked_sub(1)
        .map_or(0, |last| shape[last]);
    let so_far_fits = x_grad_so_far.as_ref().is_none_or(|t| t.shape() == shape);
    if !all_f32
        || d == 0
        || output_grad.shape() != shape
        || gamma.shape().num_elements() != d
        || !so_far_fits
    {
        return layer_norm_backward_from_float_ops::<Flex>(
            tensor,
            gamma,
            epsilon,
            output_grad,
            x_grad_so_far,
        );
    }
    let (x, gamma, dy) = (
        tensor.to_contiguous(),
        gamma.to_contiguous(),
        output_grad.to_contiguous(),
    );
    let so_far = x_grad_so_far.map(|t| t.to_contiguous());
    let (x, gamma, dy): (&[f32], &[f32], &[f32]) = (x.storage(), gamma.storage(), dy.storage());
    let so_far: Option<&[f32]> = so_far.as_ref().map(|t| t.storage());
    let n = x.len();
    let mut dx = vec![0.0f32; n];
    let block = ROWS_PER_BLOCK * d;
    let eps = epsilon as f32;
    let run = |(i, out): (usize, &mut [f32])| {
        let at = i * block;
        rows(
            &x[at..at + out.len()],
            &dy[at..at + out.len()],
            so_far.map(|s| &s[at..at + out.len()]),
            gamma,
            eps,
            out,
        )
    };
    #[cfg(feature = "rayon")]
    let partials: Vec<(Vec<f32>, Vec<f32>)> = {
        use rayon::prelude::*;
        dx.par_chunks_mut(block).enumerate().map(run).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx.chunks_mut(block).enumerate().map(run).collect();

    let (mut gamma_grad, mut beta_grad) = (vec![0.0f32; d], vec![0.0f32; d]);
    for (g, b) in &partials {
        add_into(&mut gamma_grad, g);
        add_into(&mut beta_grad, b);
    }
    let f32_tensor = |v: Vec<f32>, s: Shape| {
        FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(s), DType::F32)
    };
    LayerNormBackward::new(
        f32_tensor(dx, shape),
        f32_tensor(gamma_grad, Shape::from([d])),
        f32_tensor(beta_grad, Shape::from([d])),
    )
}

/// One block of rows: writes `dx` (plus `so_far`'s rows when given), returns the
/// block's `gamma` and `beta` gradients.
fn rows(
    x: &[f32],
    dy: &[f32],
    so_far: Option<&[f32]>,
    gamma: &[f32],
    eps: f32,
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let (mut gamma_grad, mut beta_grad) = (vec![0.0f32; d], vec![0.0f32; d]);
    let inv_d = 1.0 / d as f32;
    for (r, ((x, dy), dx)) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
        .enumerate()
    {
        let mean = sum(x, |v| v) * inv_d;
        let var = sum(x, |v| (v - mean) * (v - mean)) * inv_d;
        let rstd = 1.0 / (var + eps).sqrt();
        // g = dy * gamma, kept in dx for the last pass; the row's two sums.
        let (mut sum_g, mut sum_g_x_hat) = ([0.0f32; LANES], [0.0f32; LANES]);
        let mut lanes = |at: usize, len: usize| {
            let (x, dy, gamma) = (&x[at..at + len], &dy[at..at + len], &gamma[at..at + len]);
            let (gamma_grad, beta_grad) =
                (&mut gamma_grad[at..at + len], &mut beta_grad[at..at + len]);
            let dx = &mut dx[at..at + len];
            for l in 0..len {
                let x_hat = (x[l] - mean) * rstd;
                let g = dy[l] * gamma[l];
                sum_g[l] += g;
                sum_g_x_hat[l] += g * x_hat;
                gamma_grad[l] += dy[l] * x_hat;
                beta_grad[l] += dy[l];
                dx[l] = g;
            }
        };
        let whole = d / LANES * LANES;
        for at in (0..whole).step_by(LANES) {
            lanes(at, LANES);
        }
        lanes(whole, d - whole);
        let mean_g = sum_g.iter().sum::<f32>() * inv_d;
        let mean_g_x_hat = sum_g_x_hat.iter().sum::<f32>() * inv_d;
        for (&x, dx) in x.iter().zip(dx.iter_mut()) {
            let x_hat = (x - mean) * rstd;
            *dx = rstd * (*dx - mean_g - x_hat * mean_g_x_hat);
        }
        if let Some(so_far) = so_far {
            add_into(dx, &so_far[r * d..(r + 1) * d]);
        }
    }
    (gamma_grad, beta_grad)
}

/// `sum(f(v))` kept in `LANES` partial sums.
#[inline]
fn sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    for (l, &v) in chunks.remainder().iter().enumerate() {
        acc[l] += f(v);
    }
    acc.iter().sum()
}

fn add_into(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}
