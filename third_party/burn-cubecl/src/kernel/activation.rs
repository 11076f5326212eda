//! Element-wise activations and their derivatives as one CubeCL kernel each (realsyn
//! patch, PATCHES.md), computed in f32 whatever the tensor's float type:
//!
//! - the exact GELU, `0.5 x (1 + erf(x / sqrt 2))` (torch's `nn.GELU()`). The trait's
//!   defaults were five kernels forward and fifteen backward, and the backward was the
//!   derivative of the tanh approximation, not of the exact GELU the forward computes.
//! - the sigmoid, `1 / (1 + exp(-x))`, which SiLU (EVA02's SwiGLU) and QuickGELU
//!   multiply by. The trait's defaults were six kernels forward (`exp(-log(1 +
//!   exp(-x)))`, each step a kernel) and three backward.

use cubecl::prelude::*;
use cubecl::std::tensor::layout::linear::LinearView;

use super::bias::elementwise;
use crate::{
    CubeRuntime,
    kernel::{into_contiguous, utils::address_type},
    tensor::CubeTensor,
};

/// Which activation a kernel computes (a compile-time choice: one kernel each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// The exact GELU; its backward reads the activation's input.
    Gelu,
    /// The logistic sigmoid; its backward reads the activation's output, as Burn's
    /// `sigmoid_backward` is given it.
    Sigmoid,
}

#[cube(launch_unchecked, address_type = "dynamic")]
fn activation_kernel<F: Float>(
    input: &LinearView<F>,
    output: &mut LinearView<F, ReadWrite>,
    #[comptime] activation: Activation,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let x = f32::cast_from(input[ABSOLUTE_POS]);
    let y = if comptime!(activation == Activation::Gelu) {
        gelu_f32(x)
    } else {
        1.0f32 / (1.0f32 + (-x).exp())
    };
    output[ABSOLUTE_POS] = F::cast_from(y);
}

/// `grad * f'`, with `f'` computed from `saved`: the input for the GELU, the output
/// for the sigmoid (`y (1 - y)`).
#[cube(launch_unchecked, address_type = "dynamic")]
fn activation_backward_kernel<F: Float>(
    saved: &LinearView<F>,
    grad: &LinearView<F>,
    output: &mut LinearView<F, ReadWrite>,
    #[comptime] activation: Activation,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let s = f32::cast_from(saved[ABSOLUTE_POS]);
    let g = f32::cast_from(grad[ABSOLUTE_POS]);
    let derivative = if comptime!(activation == Activation::Gelu) {
        gelu_derivative_f32(s)
    } else {
        s * (1.0f32 - s)
    };
    output[ABSOLUTE_POS] = F::cast_from(g * derivative);
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

/// `activation` of `tensor`.
pub fn activation<R: CubeRuntime>(tensor: CubeTensor<R>, activation: Activation) -> CubeTensor<R> {
    let input = into_contiguous(tensor);
    let (output, cube_count, cube_dim) = elementwise(&input);
    let dtype = input.dtype;
    unsafe {
        activation_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(input, output),
            input.into_linear_view(),
            output.clone().into_linear_view(),
            activation,
            dtype.into(),
        );
    }
    output
}

/// `grad` times `activation`'s derivative, computed from `saved` ([`Activation`] says
/// which tensor that is).
pub fn activation_backward<R: CubeRuntime>(
    saved: CubeTensor<R>,
    grad: CubeTensor<R>,
    activation: Activation,
) -> CubeTensor<R> {
    let saved = into_contiguous(saved);
    let grad = into_contiguous(grad);
    let (output, cube_count, cube_dim) = elementwise(&saved);
    let dtype = saved.dtype;
    unsafe {
        activation_backward_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(saved, grad, output),
            saved.into_linear_view(),
            grad.into_linear_view(),
            output.clone().into_linear_view(),
            activation,
            dtype.into(),
        );
    }
    output
}
