//! GELU (the exact one, `0.5 x (1 + erf(x / sqrt 2))`, torch's `nn.GELU()`) and its
//! derivative as one CubeCL kernel each (realsyn patch, PATCHES.md).
//!
//! The trait's defaults were five kernels forward and fifteen backward, and the
//! backward was the derivative of the tanh approximation, not of the exact GELU
//! the forward computes. Computed in f32 whatever the tensor's float type.

use cubecl::prelude::*;
use cubecl::std::tensor::layout::linear::LinearView;

use super::bias::elementwise;
use crate::{
    CubeRuntime,
    kernel::{into_contiguous, utils::address_type},
    tensor::CubeTensor,
};

#[cube(launch_unchecked, address_type = "dynamic")]
fn gelu_kernel<F: Float>(
    input: &LinearView<F>,
    output: &mut LinearView<F, ReadWrite>,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let x = f32::cast_from(input[ABSOLUTE_POS]);
    output[ABSOLUTE_POS] = F::cast_from(gelu_f32(x));
}

/// The exact GELU of `x`, `x Phi(x)`.
#[cube]
pub(crate) fn gelu_f32(x: f32) -> f32 {
    x * (0.5f32 * (1.0f32 + Erf::erf(x * 0.707_106_77f32)))
}

/// The exact GELU's derivative at `x`, `Phi(x) + x phi(x)`.
#[cube]
pub(crate) fn gelu_derivative_f32(x: f32) -> f32 {
    let cdf = 0.5f32 * (1.0f32 + Erf::erf(x * 0.707_106_77f32));
    let pdf = 0.398_942_3f32 * (-0.5f32 * x * x).exp();
    cdf + x * pdf
}

#[cube(launch_unchecked, address_type = "dynamic")]
fn gelu_backward_kernel<F: Float>(
    input: &LinearView<F>,
    grad: &LinearView<F>,
    output: &mut LinearView<F, ReadWrite>,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let x = f32::cast_from(input[ABSOLUTE_POS]);
    let g = f32::cast_from(grad[ABSOLUTE_POS]);
    output[ABSOLUTE_POS] = F::cast_from(g * gelu_derivative_f32(x));
}

/// The exact GELU of `tensor`.
pub fn gelu<R: CubeRuntime>(tensor: CubeTensor<R>) -> CubeTensor<R> {
    let input = into_contiguous(tensor);
    let (output, cube_count, cube_dim) = elementwise(&input);
    let dtype = input.dtype;
    unsafe {
        gelu_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(input, output),
            input.into_linear_view(),
            output.clone().into_linear_view(),
            dtype.into(),
        );
    }
    output
}

/// `grad` times the exact GELU's derivative at `x`.
pub fn gelu_backward<R: CubeRuntime>(x: CubeTensor<R>, grad: CubeTensor<R>) -> CubeTensor<R> {
    let input = into_contiguous(x);
    let grad = into_contiguous(grad);
    let (output, cube_count, cube_dim) = elementwise(&input);
    let dtype = input.dtype;
    unsafe {
        gelu_backward_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(input, grad, output),
            input.into_linear_view(),
            grad.into_linear_view(),
            output.clone().into_linear_view(),
            dtype.into(),
        );
    }
    output
}
