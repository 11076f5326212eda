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
//!
//! The op is bound by memory (a few flops per element it reads), so `x_grad` is
//! written over a buffer the op already owns (twelfth round): the gradient so far,
//! or else `grad`, whose row is read before it is overwritten. A new zeroed buffer
//! cost a memset and one more stream per element. The row loops are compiled for
//! the widest vector level the CPU has (`par::widest!`); the crate's baseline is
//! SSE2.

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
    let (x, gamma) = (tensor.to_contiguous(), gamma.to_contiguous());
    let dy = output_grad.into_contiguous();
    let so_far = x_grad_so_far.map(FlexTensor::into_contiguous);
    // `x_grad` goes over the gradient so far when this op holds its only handle
    // (and is added to it), else over `grad` (`storage_mut` copies it first if
    // another handle exists), adding the gradient so far from where it is. `other`:
    // the tensor not written over (`grad` when adding).
    let (mut out, other, adding) = match so_far {
        Some(so_far) if so_far.is_unique() => (so_far, Some(dy), true),
        so_far => (dy, so_far, false),
    };
    let (x, gamma): (&[f32], &[f32]) = (x.storage(), gamma.storage());
    let other: Option<&[f32]> = other.as_ref().map(|t| t.storage());
    let out_rows: &mut [f32] = out.storage_mut();
    let block = ROWS_PER_BLOCK * d;
    let eps = epsilon as f32;
    let run = |(i, out): (usize, &mut [f32])| {
        let range = i * block..i * block + out.len();
        let (mut gamma_grad, mut beta_grad) = (vec![0.0f32; d], vec![0.0f32; d]);
        let how = match other.map(|t| &t[range.clone()]) {
            Some(dy) if adding => Dx::AddedTo { dy },
            so_far => Dx::OverGrad { so_far },
        };
        rows(
            &x[range.clone()],
            gamma,
            eps,
            out,
            how,
            &mut gamma_grad,
            &mut beta_grad,
        );
        (gamma_grad, beta_grad)
    };
    #[cfg(feature = "rayon")]
    let partials: Vec<(Vec<f32>, Vec<f32>)> = {
        use rayon::prelude::*;
        out_rows
            .par_chunks_mut(block)
            .enumerate()
            .map(run)
            .collect()
    };
    #[cfg(not(feature = "rayon"))]
    let partials: Vec<(Vec<f32>, Vec<f32>)> =
        out_rows.chunks_mut(block).enumerate().map(run).collect();

    let (mut gamma_grad, mut beta_grad) = (vec![0.0f32; d], vec![0.0f32; d]);
    for (g, b) in &partials {
        add_into(&mut gamma_grad, g);
        add_into(&mut beta_grad, b);
    }
    let f32_tensor = |v: Vec<f32>, s: Shape| {
        FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(s), DType::F32)
    };
    LayerNormBackward::new(
        out,
        f32_tensor(gamma_grad, Shape::from([d])),
        f32_tensor(beta_grad, Shape::from([d])),
    )
}

/// How a block's `x_grad` rows are written into `out`.
#[derive(Clone, Copy)]
enum Dx<'a> {
    /// `out` holds the gradient so far and `x_grad` is added to it; `dy`: `grad`'s
    /// rows.
    AddedTo { dy: &'a [f32] },
    /// `out` holds `grad`'s rows, each read before `x_grad` overwrites it, with the
    /// gradient so far's rows added when there is one (read where they are).
    OverGrad { so_far: Option<&'a [f32]> },
}

crate::par::widest! {
    /// One block of rows: `x_grad` into `out` as `how` says, and the block's share
    /// of the `gamma` and `beta` gradients added into theirs.
    fn rows[](
        x: &[f32],
        gamma: &[f32],
        eps: f32,
        out: &mut [f32],
        how: Dx<'_>,
        gamma_grad: &mut [f32],
        beta_grad: &mut [f32],
    ) {
        let d = gamma.len();
        let inv_d = 1.0 / d as f32;
        // g = grad * gamma for the row being written, kept for the last pass.
        let mut g = vec![0.0f32; d];
        for (r, (x, out)) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
            let mean = sum(x, |v| v) * inv_d;
            let var = sum(x, |v| (v - mean) * (v - mean)) * inv_d;
            let rstd = 1.0 / (var + eps).sqrt();
            let dy: &[f32] = match how {
                Dx::AddedTo { dy } => &dy[r * d..(r + 1) * d],
                Dx::OverGrad { .. } => &*out,
            };
            let row = Row { x, dy, gamma, mean, rstd };
            let (sum_g, sum_g_x_hat) = row.gradient_sums(&mut g, gamma_grad, beta_grad);
            let (mean_g, mean_g_x_hat) = (sum_g * inv_d, sum_g_x_hat * inv_d);
            let dx = |x: f32, g: f32| rstd * (g - mean_g - (x - mean) * rstd * mean_g_x_hat);
            let pairs = out.iter_mut().zip(x).zip(&g);
            match how {
                Dx::AddedTo { .. } => pairs.for_each(|((o, &x), &g)| *o += dx(x, g)),
                Dx::OverGrad { so_far: Some(s) } => pairs
                    .zip(&s[r * d..(r + 1) * d])
                    .for_each(|(((o, &x), &g), &s)| *o = dx(x, g) + s),
                Dx::OverGrad { so_far: None } => pairs.for_each(|((o, &x), &g)| *o = dx(x, g)),
            }
        }
    }
}

/// One row's inputs and statistics.
struct Row<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    gamma: &'a [f32],
    mean: f32,
    rstd: f32,
}

impl Row<'_> {
    /// Writes `g = dy * gamma`, adds the row's `dy * x_hat` and `dy` into the
    /// `gamma` and `beta` gradients; returns `sum(g)` and `sum(g * x_hat)`. In
    /// `LANES`-wide chunks zipped as slices, so that the loop vectorises (indexing
    /// the slices by a running offset left it scalar).
    #[inline(always)]
    fn gradient_sums(
        &self,
        g: &mut [f32],
        gamma_grad: &mut [f32],
        beta_grad: &mut [f32],
    ) -> (f32, f32) {
        let (mean, rstd) = (self.mean, self.rstd);
        let (mut sum_g, mut sum_g_x_hat) = ([0.0f32; LANES], [0.0f32; LANES]);
        let mut lanes = |x: &[f32],
                         dy: &[f32],
                         gamma: &[f32],
                         g: &mut [f32],
                         gg: &mut [f32],
                         bg: &mut [f32]| {
            for l in 0..x.len().min(LANES) {
                let x_hat = (x[l] - mean) * rstd;
                let gl = dy[l] * gamma[l];
                sum_g[l] += gl;
                sum_g_x_hat[l] += gl * x_hat;
                gg[l] += dy[l] * x_hat;
                bg[l] += dy[l];
                g[l] = gl;
            }
        };
        let whole = self.x.len() / LANES * LANES;
        let (x, dy, gamma) = (
            self.x[..whole].chunks_exact(LANES),
            self.dy[..whole].chunks_exact(LANES),
            self.gamma[..whole].chunks_exact(LANES),
        );
        let g_chunks = g[..whole].chunks_exact_mut(LANES);
        let gg_chunks = gamma_grad[..whole].chunks_exact_mut(LANES);
        let bg_chunks = beta_grad[..whole].chunks_exact_mut(LANES);
        for (((((x, dy), gamma), g), gg), bg) in x
            .zip(dy)
            .zip(gamma)
            .zip(g_chunks)
            .zip(gg_chunks)
            .zip(bg_chunks)
        {
            lanes(x, dy, gamma, g, gg, bg);
        }
        lanes(
            &self.x[whole..],
            &self.dy[whole..],
            &self.gamma[whole..],
            &mut g[whole..],
            &mut gamma_grad[whole..],
            &mut beta_grad[whole..],
        );
        (sum_g.iter().sum(), sum_g_x_hat.iter().sum())
    }
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
