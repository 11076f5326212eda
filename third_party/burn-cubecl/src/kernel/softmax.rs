//! Attention's softmax over the last dimension, and its backward, as one CubeCL
//! kernel each (realsyn patch, PATCHES.md): where the decomposition was five kernels
//! (a max, a subtraction, an exponential, a sum, a division) and four backward (a
//! product, a sum, a subtraction, a product), and the scores' scaling and a causal
//! mask (a comparison, an offset, a fill) came before it, kernels of their own. One
//! cube of [`UNITS`] per row (rows are a few dozen to a few hundred keys), in f32
//! whatever the tensor's float type.
//!
//! NaN-safe as the decomposition is with a mask: a row whose every score is -inf
//! (fully masked) gives zeros, its maximum clamped to f32's lowest finite value and
//! its sum to the smallest positive one. For any other row the clamps change nothing.

use burn_backend::TensorMetadata;
use cubecl::prelude::*;

use super::row_reduce::{cube_max, cube_sum, one_cube_per_row};
use crate::{
    CubeRuntime,
    kernel::{into_contiguous, utils::address_type},
    ops::numeric::empty_device_dtype,
    tensor::CubeTensor,
};

/// Units per cube (one row each): a power of two, for the tree reductions.
const UNITS: u32 = 32;

/// `softmax(scale * x)` of one row; with `causal` (1) the row's keys after
/// `row % queries + n - queries` are hidden, as a causal mask's -inf hides them.
#[cube(launch, address_type = "dynamic")]
fn softmax_kernel<F: Float>(
    input: &Tensor<F>,
    output: &mut Tensor<F>,
    rows: usize,
    n: usize,
    queries: usize,
    scale: f32,
    causal: u32,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let mut shared = SharedMemory::<f32>::new(UNITS as usize);
    let base = row * n;
    let (lane, step) = (UNIT_POS as usize, CUBE_DIM as usize);
    // The keys this row sees: all, or up to its query's position (queries <= n).
    let mut visible = n;
    if causal == 1 {
        visible = row % queries + n - queries + 1;
    }
    let mut max = f32::new(f32::NEG_INFINITY);
    for i in range_stepped(lane, visible, step) {
        max = f32::max(max, f32::cast_from(input[base + i]) * scale);
    }
    let max = f32::max(cube_max(&mut shared, max), f32::new(f32::MIN));
    let mut sum = 0.0f32;
    for i in range_stepped(lane, visible, step) {
        sum += (f32::cast_from(input[base + i]) * scale - max).exp();
    }
    let sum = f32::max(cube_sum(&mut shared, sum), f32::new(f32::MIN_POSITIVE));
    for i in range_stepped(lane, n, step) {
        let mut weight = 0.0f32;
        if i < visible {
            weight = (f32::cast_from(input[base + i]) * scale - max).exp() / sum;
        }
        output[base + i] = F::cast_from(weight);
    }
}

#[cube(launch, address_type = "dynamic")]
fn softmax_backward_kernel<F: Float>(
    softmax: &Tensor<F>,
    softmax_grad: &Tensor<F>,
    output: &mut Tensor<F>,
    rows: usize,
    n: usize,
    scale: f32,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let mut shared = SharedMemory::<f32>::new(UNITS as usize);
    let base = row * n;
    let (lane, step) = (UNIT_POS as usize, CUBE_DIM as usize);
    let mut dot = 0.0f32;
    for i in range_stepped(lane, n, step) {
        dot += f32::cast_from(softmax[base + i]) * f32::cast_from(softmax_grad[base + i]);
    }
    let dot = cube_sum(&mut shared, dot);
    for i in range_stepped(lane, n, step) {
        let s = f32::cast_from(softmax[base + i]);
        output[base + i] = F::cast_from(scale * s * (f32::cast_from(softmax_grad[base + i]) - dot));
    }
}

/// `softmax` of `scale * scores` over the last dimension, with `causal` the keys
/// after each query's position hidden (`[..., queries, keys]`, queries <= keys).
pub fn softmax<R: CubeRuntime>(scores: CubeTensor<R>, scale: f64, causal: bool) -> CubeTensor<R> {
    let shape = scores.shape();
    let n = shape[shape.num_dims() - 1];
    let queries = match shape.num_dims() {
        0 | 1 => 1,
        d => shape[d - 2],
    };
    assert!(
        !causal || queries <= n,
        "a causal softmax needs no more queries ({queries}) than keys ({n})"
    );
    let rows = shape.num_elements() / n.max(1);
    let input = into_contiguous(scores);
    let output = empty_device_dtype(
        input.client.clone(),
        input.device.clone(),
        shape,
        input.dtype,
    );
    let (count, cube_dim) = one_cube_per_row(&input, rows, UNITS);
    let dtype = input.dtype;
    softmax_kernel::launch(
        &output.client,
        count,
        cube_dim,
        address_type!(input, output),
        input.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        rows,
        n,
        queries.max(1),
        scale as f32,
        causal as u32,
        dtype.into(),
    );
    output
}

/// The scores' gradient `scale S (dS - rowsum(S dS))` from the softmax `S` and its
/// gradient `dS`.
pub fn softmax_backward<R: CubeRuntime>(
    softmax: CubeTensor<R>,
    softmax_grad: CubeTensor<R>,
    scale: f64,
) -> CubeTensor<R> {
    let shape = softmax.shape();
    let n = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / n.max(1);
    let softmax = into_contiguous(softmax);
    let softmax_grad = into_contiguous(softmax_grad);
    let output = empty_device_dtype(
        softmax.client.clone(),
        softmax.device.clone(),
        shape,
        softmax.dtype,
    );
    let (count, cube_dim) = one_cube_per_row(&softmax, rows, UNITS);
    let dtype = softmax.dtype;
    softmax_backward_kernel::launch(
        &output.client,
        count,
        cube_dim,
        address_type!(softmax, softmax_grad, output),
        softmax.into_tensor_arg(),
        softmax_grad.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        rows,
        n,
        scale as f32,
        dtype.into(),
    );
    output
}
