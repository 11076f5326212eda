//! Layer norm over the last dimension as CubeCL kernels (realsyn patch, PATCHES.md).
//!
//! One cube per row: each unit walks the row with the cube's stride (so the cube's
//! loads are contiguous), and a tree sum in shared memory combines the units, so the
//! kernels need no plane (warp) operations and run the same on every device, Mesa's
//! lavapipe included (where `benches/cubecl_cpu.sh` checks them against the CPU
//! backend). The statistics are two-pass (mean, then the mean of squared
//! deviations) and accumulated in f32 whatever the tensor's float type, as the
//! decomposition in burn-backend computes them. Forward: one kernel where the
//! decomposition was nine. Backward: one kernel for the input's gradient (the
//! statistics recomputed), [`ROWS_PER_CUBE`] rows per cube, each cube also summing
//! gamma's and beta's gradients over its rows, and one reduction over the cubes' sums:
//! two kernels where the decomposition was nineteen.

use burn_backend::{DType, Shape, TensorMetadata};
use cubecl::prelude::*;

use super::row_reduce::{cube_sum, one_cube_per_row};
use crate::{
    CubeRuntime,
    kernel::{into_contiguous, utils::address_type},
    ops::numeric::empty_device_dtype,
    tensor::CubeTensor,
};

/// Units per cube (one row each): a power of two, for the tree sum.
const UNITS: u32 = 128;

/// The row's mean and `1 / sqrt(var + eps)`, two-pass.
#[cube]
fn row_stats<F: Float>(
    input: &Tensor<F>,
    shared: &mut SharedMemory<f32>,
    base: usize,
    d: usize,
    eps: f32,
) -> (f32, f32) {
    let (lane, step) = (UNIT_POS as usize, CUBE_DIM as usize);
    let mut sum = 0.0f32;
    for i in range_stepped(lane, d, step) {
        sum += f32::cast_from(input[base + i]);
    }
    let mean = cube_sum(shared, sum) / d as f32;
    let mut sq = 0.0f32;
    for i in range_stepped(lane, d, step) {
        let c = f32::cast_from(input[base + i]) - mean;
        sq += c * c;
    }
    let var = cube_sum(shared, sq) / d as f32;
    (mean, 1.0f32 / (var + eps).sqrt())
}

#[cube(launch, address_type = "dynamic")]
fn layer_norm_kernel<F: Float>(
    input: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    output: &mut Tensor<F>,
    rows: usize,
    eps: f32,
    #[comptime] has_beta: bool,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let mut shared = SharedMemory::<f32>::new(UNITS as usize);
    let d = gamma.len();
    let base = row * d;
    let (mean, rstd) = row_stats::<F>(input, &mut shared, base, d, eps);
    for i in range_stepped(UNIT_POS as usize, d, CUBE_DIM as usize) {
        let mut y = (f32::cast_from(input[base + i]) - mean) * rstd * f32::cast_from(gamma[i]);
        if has_beta {
            y += f32::cast_from(beta[i]);
        }
        output[base + i] = F::cast_from(y);
    }
}

/// Rows per cube in the backward kernel. Each cube also sums gamma's and beta's
/// gradients over its rows, one partial sum per cube, which one reduction over the
/// cubes finishes. A cube's rows run one after another (three cube-wide sums each),
/// so fewer rows per cube keep more cubes in flight on a GPU, and more write fewer
/// partials: at 16, ViT-B/16's 25,216 rows per GPU are 1,576 cubes whose partials
/// (10 MB in f32) replace a `grad * x_hat` tensor of the activations' size written
/// and read again (39 MB in bf16). Not yet timed on a GPU.
const ROWS_PER_CUBE: usize = 16;

#[cube(launch, address_type = "dynamic")]
fn layer_norm_backward_kernel<F: Float>(
    input: &Tensor<F>,
    gamma: &Tensor<F>,
    output_grad: &Tensor<F>,
    x_grad_so_far: &Tensor<F>,
    x_grad: &mut Tensor<F>,
    // [cubes, 2 half]: per cube, gamma's gradient summed over its rows at 0..d, then
    // beta's at half..half + d (zeros between).
    partials: &mut Tensor<f32>,
    rows: usize,
    half: usize,
    eps: f32,
    #[comptime] accumulate: bool,
    #[define(F)] _dtype: StorageType,
) {
    let cube = CUBE_POS;
    let first = cube * ROWS_PER_CUBE;
    if first >= rows {
        terminate!();
    }
    let last = if first + ROWS_PER_CUBE < rows {
        first + ROWS_PER_CUBE
    } else {
        rows
    };
    let mut shared = SharedMemory::<f32>::new(UNITS as usize);
    let mut means = SharedMemory::<f32>::new(ROWS_PER_CUBE);
    let mut rstds = SharedMemory::<f32>::new(ROWS_PER_CUBE);
    let d = gamma.len();
    let (lane, step) = (UNIT_POS as usize, CUBE_DIM as usize);
    for row in first..last {
        let base = row * d;
        let (mean, rstd) = row_stats::<F>(input, &mut shared, base, d, eps);
        if UNIT_POS == 0 {
            means[row - first] = mean;
            rstds[row - first] = rstd;
        }
        // g = grad * gamma; x_grad = rstd * (g - mean(g) - x_hat * mean(g * x_hat)).
        let mut sum_g = 0.0f32;
        let mut sum_g_x_hat = 0.0f32;
        for i in range_stepped(lane, d, step) {
            let x_hat = (f32::cast_from(input[base + i]) - mean) * rstd;
            let g = f32::cast_from(output_grad[base + i]) * f32::cast_from(gamma[i]);
            sum_g += g;
            sum_g_x_hat += g * x_hat;
        }
        let mean_g = cube_sum(&mut shared, sum_g) / d as f32;
        let mean_g_x_hat = cube_sum(&mut shared, sum_g_x_hat) / d as f32;
        for i in range_stepped(lane, d, step) {
            let x_hat = (f32::cast_from(input[base + i]) - mean) * rstd;
            let g = f32::cast_from(output_grad[base + i]) * f32::cast_from(gamma[i]);
            let mut dx = rstd * (g - mean_g - x_hat * mean_g_x_hat);
            if accumulate {
                dx += f32::cast_from(x_grad_so_far[base + i]);
            }
            x_grad[base + i] = F::cast_from(dx);
        }
    }
    sync_cube();
    // gamma's and beta's gradients over the cube's rows, a unit per column: the rows
    // are read again, from cache on a GPU, where a `grad * x_hat` tensor was written
    // out and summed by two reductions.
    for i in range_stepped(lane, d, step) {
        let mut gamma_sum = 0.0f32;
        let mut beta_sum = 0.0f32;
        for row in first..last {
            let at = row * d + i;
            let dy = f32::cast_from(output_grad[at]);
            let x_hat = (f32::cast_from(input[at]) - means[row - first]) * rstds[row - first];
            gamma_sum += dy * x_hat;
            beta_sum += dy;
        }
        partials[cube * 2 * half + i] = gamma_sum;
        partials[cube * 2 * half + half + i] = beta_sum;
    }
    for i in range_stepped(d + lane, half, step) {
        partials[cube * 2 * half + i] = 0.0;
        partials[cube * 2 * half + half + i] = 0.0;
    }
}

/// `(tensor - mean) / sqrt(var + eps) * gamma + beta` over the last dimension.
pub fn layer_norm<R: CubeRuntime>(
    tensor: CubeTensor<R>,
    gamma: CubeTensor<R>,
    beta: Option<CubeTensor<R>>,
    epsilon: f64,
) -> CubeTensor<R> {
    let shape = tensor.shape();
    let d = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / d.max(1);
    let input = into_contiguous(tensor);
    let gamma = into_contiguous(gamma);
    let has_beta = beta.is_some();
    let beta = into_contiguous(beta.unwrap_or_else(|| gamma.clone()));
    let output = empty_device_dtype(
        input.client.clone(),
        input.device.clone(),
        shape,
        input.dtype,
    );
    let (count, cube_dim) = one_cube_per_row(&input, rows, UNITS);
    let dtype = input.dtype;
    layer_norm_kernel::launch(
        &output.client,
        count,
        cube_dim,
        address_type!(input, gamma, beta, output),
        input.into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        rows,
        epsilon as f32,
        has_beta,
        dtype.into(),
    );
    output
}

/// The input's gradient (plus `x_grad_so_far`, the gradient it already has, when
/// given: added as it is written, where a separate addition would be a kernel of its
/// own) and `[cubes, 2 half]` partial sums in f32, whose column sums are gamma's
/// gradient (columns `0..d`) and beta's (`half..half + d`), with `half`, the returned
/// third value. `half` is `d` rounded up so that beta's part starts at the memory
/// alignment in f32 and in the input's type, which makes both parts of the sums (and
/// of their cast) views rather than copies. `x_grad_so_far` must have the input's
/// shape and type.
pub fn layer_norm_backward<R: CubeRuntime>(
    tensor: CubeTensor<R>,
    gamma: CubeTensor<R>,
    epsilon: f64,
    output_grad: CubeTensor<R>,
    x_grad_so_far: Option<CubeTensor<R>>,
) -> (CubeTensor<R>, CubeTensor<R>, usize) {
    let shape = tensor.shape();
    let d = shape[shape.num_dims() - 1];
    let alignment = tensor.client.properties().memory.alignment as usize;
    let half = d.next_multiple_of((alignment / tensor.dtype.size().min(4)).max(1));
    let rows = shape.num_elements() / d.max(1);
    let input = into_contiguous(tensor);
    let gamma = into_contiguous(gamma);
    let output_grad = into_contiguous(output_grad);
    let accumulate = x_grad_so_far.is_some();
    // Without a gradient so far the kernel never reads the argument.
    let so_far = into_contiguous(x_grad_so_far.unwrap_or_else(|| output_grad.clone()));
    let (client, device) = (input.client.clone(), input.device.clone());
    let x_grad = empty_device_dtype(client.clone(), device.clone(), shape, input.dtype);
    let cubes = rows.div_ceil(ROWS_PER_CUBE);
    let partials = empty_device_dtype(
        client.clone(),
        device,
        Shape::from([cubes, 2 * half]),
        DType::F32,
    );
    let (count, cube_dim) = one_cube_per_row(&input, cubes, UNITS);
    let dtype = input.dtype;
    layer_norm_backward_kernel::launch(
        &client,
        count,
        cube_dim,
        address_type!(input, gamma, output_grad, so_far, x_grad, partials),
        input.into_tensor_arg(),
        gamma.into_tensor_arg(),
        output_grad.into_tensor_arg(),
        so_far.into_tensor_arg(),
        x_grad.clone().into_tensor_arg(),
        partials.clone().into_tensor_arg(),
        rows,
        half,
        epsilon as f32,
        accumulate,
        dtype.into(),
    );
    (x_grad, partials, half)
}
