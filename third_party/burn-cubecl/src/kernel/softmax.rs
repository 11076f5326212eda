//! Attention's softmax over the last dimension, and its backward, as one CubeCL
//! kernel each (realsyn patch, PATCHES.md): where the decomposition was five kernels
//! (a max, a subtraction, an exponential, a sum, a division) and four backward (a
//! product, a sum, a subtraction, a product). One cube of [`UNITS`] per row (rows are
//! a few dozen to a few hundred keys), in f32 whatever the tensor's float type.
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

#[cube(launch, address_type = "dynamic")]
fn softmax_kernel<F: Float>(
    input: &Tensor<F>,
    output: &mut Tensor<F>,
    rows: usize,
    n: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let mut shared = SharedMemory::<f32>::new(UNITS as usize);
    let base = row * n;
    let (lane, step) = (UNIT_POS as usize, CUBE_DIM as usize);
    let mut max = f32::new(f32::NEG_INFINITY);
    for i in range_stepped(lane, n, step) {
        max = f32::max(max, f32::cast_from(input[base + i]));
    }
    let max = f32::max(cube_max(&mut shared, max), f32::new(f32::MIN));
    let mut sum = 0.0f32;
    for i in range_stepped(lane, n, step) {
        sum += (f32::cast_from(input[base + i]) - max).exp();
    }
    let sum = f32::max(cube_sum(&mut shared, sum), f32::new(f32::MIN_POSITIVE));
    for i in range_stepped(lane, n, step) {
        output[base + i] = F::cast_from((f32::cast_from(input[base + i]) - max).exp() / sum);
    }
}

#[cube(launch, address_type = "dynamic")]
fn softmax_backward_kernel<F: Float>(
    softmax: &Tensor<F>,
    softmax_grad: &Tensor<F>,
    output: &mut Tensor<F>,
    rows: usize,
    n: usize,
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
        output[base + i] = F::cast_from(s * (f32::cast_from(softmax_grad[base + i]) - dot));
    }
}

/// `softmax` of `scores` over the last dimension.
pub fn softmax<R: CubeRuntime>(scores: CubeTensor<R>) -> CubeTensor<R> {
    let shape = scores.shape();
    let n = shape[shape.num_dims() - 1];
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
        dtype.into(),
    );
    output
}

/// The scores' gradient `S (dS - rowsum(S dS))` from the softmax `S` and its
/// gradient `dS`.
pub fn softmax_backward<R: CubeRuntime>(
    softmax: CubeTensor<R>,
    softmax_grad: CubeTensor<R>,
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
        dtype.into(),
    );
    output
}
