//! A linear layer's bias added by the kernel after the product (realsyn patch,
//! PATCHES.md): `gelu(x + bias)` and its derivative, and `x + bias + residual`.
//!
//! Burn's `linear` adds the bias in a kernel of its own, a pass over the product, and
//! what follows it in a transformer block (the MLP's GELU, the residual addition
//! after each projection) is another: in a ViT-B/32 training step 72 kernels and as
//! many passes over the activations (24 of them the MLP's hidden ones, 4x wider). The
//! bias is indexed by the position in the row, so the kernels stay element-wise.
//! Computed in f32 whatever the tensor's float type; in f32 the same sums, in the same
//! order, as the kernels they replace.

use burn_backend::TensorMetadata;
use cubecl::std::tensor::layout::linear::LinearView;
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::activation::{gelu_derivative_f32, gelu_f32};
use crate::{
    CubeRuntime,
    kernel::{into_contiguous, utils::address_type},
    ops::numeric::empty_device_dtype,
    tensor::CubeTensor,
};

#[cube(launch_unchecked, address_type = "dynamic")]
fn bias_gelu_kernel<F: Float>(
    input: &LinearView<F>,
    bias: &Tensor<F>,
    output: &mut LinearView<F, ReadWrite>,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let b = f32::cast_from(bias[ABSOLUTE_POS % bias.len()]);
    output[ABSOLUTE_POS] = F::cast_from(gelu_f32(f32::cast_from(input[ABSOLUTE_POS]) + b));
}

#[cube(launch_unchecked, address_type = "dynamic")]
fn bias_gelu_backward_kernel<F: Float>(
    input: &LinearView<F>,
    bias: &Tensor<F>,
    grad: &LinearView<F>,
    output: &mut LinearView<F, ReadWrite>,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let x = f32::cast_from(input[ABSOLUTE_POS]) + f32::cast_from(bias[ABSOLUTE_POS % bias.len()]);
    let g = f32::cast_from(grad[ABSOLUTE_POS]);
    output[ABSOLUTE_POS] = F::cast_from(g * gelu_derivative_f32(x));
}

#[cube(launch_unchecked, address_type = "dynamic")]
fn bias_residual_kernel<F: Float>(
    input: &LinearView<F>,
    bias: &Tensor<F>,
    residual: &LinearView<F>,
    output: &mut LinearView<F, ReadWrite>,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let y = f32::cast_from(input[ABSOLUTE_POS]) + f32::cast_from(bias[ABSOLUTE_POS % bias.len()]);
    output[ABSOLUTE_POS] = F::cast_from(y + f32::cast_from(residual[ABSOLUTE_POS]));
}

/// `silu(gate + gate_bias) * (x + x_bias)`, a SwiGLU's gated activation.
#[cube(launch_unchecked, address_type = "dynamic")]
fn bias_swiglu_kernel<F: Float>(
    gate: &LinearView<F>,
    gate_bias: &Tensor<F>,
    input: &LinearView<F>,
    input_bias: &Tensor<F>,
    output: &mut LinearView<F, ReadWrite>,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let at = ABSOLUTE_POS % gate_bias.len();
    let g = f32::cast_from(gate[ABSOLUTE_POS]) + f32::cast_from(gate_bias[at]);
    let u = f32::cast_from(input[ABSOLUTE_POS]) + f32::cast_from(input_bias[at]);
    let s = 1.0f32 / (1.0f32 + (-g).exp());
    output[ABSOLUTE_POS] = F::cast_from(g * s * u);
}

/// Both gradients of [`bias_swiglu_kernel`] at once: the gate's
/// `grad u (s + g s (1 - s))` and x's `grad g s`.
#[cube(launch_unchecked, address_type = "dynamic")]
fn bias_swiglu_backward_kernel<F: Float>(
    gate: &LinearView<F>,
    gate_bias: &Tensor<F>,
    input: &LinearView<F>,
    input_bias: &Tensor<F>,
    grad: &LinearView<F>,
    gate_grad: &mut LinearView<F, ReadWrite>,
    input_grad: &mut LinearView<F, ReadWrite>,
    #[define(F)] _dtype: StorageType,
) {
    if !gate_grad.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let at = ABSOLUTE_POS % gate_bias.len();
    let g = f32::cast_from(gate[ABSOLUTE_POS]) + f32::cast_from(gate_bias[at]);
    let u = f32::cast_from(input[ABSOLUTE_POS]) + f32::cast_from(input_bias[at]);
    let dy = f32::cast_from(grad[ABSOLUTE_POS]);
    let s = 1.0f32 / (1.0f32 + (-g).exp());
    let silu_grad = dy * u;
    input_grad[ABSOLUTE_POS] = F::cast_from(dy * (g * s));
    gate_grad[ABSOLUTE_POS] = F::cast_from(silu_grad * s + silu_grad * g * s * (1.0f32 - s));
}

/// Whether the kernels below take `x` and `bias` (and `others`): one type, and a bias
/// as long as `x`'s last dimension. Otherwise the trait's defaults run.
pub fn fits<R: CubeRuntime>(
    x: &CubeTensor<R>,
    bias: &CubeTensor<R>,
    others: &[&CubeTensor<R>],
) -> bool {
    let shape = x.shape();
    let d = shape
        .num_dims()
        .checked_sub(1)
        .map_or(0, |last| shape[last]);
    d > 0
        && bias.shape().num_elements() == d
        && bias.dtype == x.dtype
        && others
            .iter()
            .all(|t| t.dtype == x.dtype && t.shape() == shape)
}

/// An output of `x`'s shape and type, and the cube count and dimension of an
/// element-wise launch over it (also the GELU kernels').
pub(crate) fn elementwise<R: CubeRuntime>(
    x: &CubeTensor<R>,
) -> (CubeTensor<R>, CubeCount, CubeDim) {
    let output = empty_device_dtype(x.client.clone(), x.device.clone(), x.shape(), x.dtype);
    let units = x.meta.num_elements();
    let cube_dim = CubeDim::new(&x.client, units);
    let cube_count = calculate_cube_count_elemwise(&x.client, units, cube_dim);
    (output, cube_count, cube_dim)
}

/// `gelu(x + bias)`, the bias broadcast over the rows of `x` ([`fits`]).
pub fn bias_gelu<R: CubeRuntime>(x: CubeTensor<R>, bias: CubeTensor<R>) -> CubeTensor<R> {
    let (input, bias) = (into_contiguous(x), into_contiguous(bias));
    let (output, cube_count, cube_dim) = elementwise(&input);
    let dtype = input.dtype;
    unsafe {
        bias_gelu_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(input, bias, output),
            input.into_linear_view(),
            bias.into_tensor_arg(),
            output.clone().into_linear_view(),
            dtype.into(),
        );
    }
    output
}

/// `grad * gelu'(x + bias)` ([`fits`], `grad` shaped like `x`).
pub fn bias_gelu_backward<R: CubeRuntime>(
    x: CubeTensor<R>,
    bias: CubeTensor<R>,
    grad: CubeTensor<R>,
) -> CubeTensor<R> {
    let (input, bias, grad) = (
        into_contiguous(x),
        into_contiguous(bias),
        into_contiguous(grad),
    );
    let (output, cube_count, cube_dim) = elementwise(&input);
    let dtype = input.dtype;
    unsafe {
        bias_gelu_backward_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(input, bias, grad, output),
            input.into_linear_view(),
            bias.into_tensor_arg(),
            grad.into_linear_view(),
            output.clone().into_linear_view(),
            dtype.into(),
        );
    }
    output
}

/// `x + bias + residual` ([`fits`], `residual` shaped like `x`).
pub fn bias_residual<R: CubeRuntime>(
    x: CubeTensor<R>,
    bias: CubeTensor<R>,
    residual: CubeTensor<R>,
) -> CubeTensor<R> {
    let (input, bias, residual) = (
        into_contiguous(x),
        into_contiguous(bias),
        into_contiguous(residual),
    );
    let (output, cube_count, cube_dim) = elementwise(&input);
    let dtype = input.dtype;
    unsafe {
        bias_residual_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(input, bias, residual, output),
            input.into_linear_view(),
            bias.into_tensor_arg(),
            residual.into_linear_view(),
            output.clone().into_linear_view(),
            dtype.into(),
        );
    }
    output
}

/// `silu(gate + gate_bias) * (x + x_bias)` (both pairs [`fits`], `x` shaped like
/// `gate`).
pub fn bias_swiglu<R: CubeRuntime>(
    gate: CubeTensor<R>,
    gate_bias: CubeTensor<R>,
    x: CubeTensor<R>,
    x_bias: CubeTensor<R>,
) -> CubeTensor<R> {
    let (gate, gate_bias) = (into_contiguous(gate), into_contiguous(gate_bias));
    let (input, input_bias) = (into_contiguous(x), into_contiguous(x_bias));
    let (output, cube_count, cube_dim) = elementwise(&gate);
    let dtype = gate.dtype;
    unsafe {
        bias_swiglu_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(gate, gate_bias, input, input_bias, output),
            gate.into_linear_view(),
            gate_bias.into_tensor_arg(),
            input.into_linear_view(),
            input_bias.into_tensor_arg(),
            output.clone().into_linear_view(),
            dtype.into(),
        );
    }
    output
}

/// The gradients of `gate` and `x` in [`bias_swiglu`], one kernel.
pub fn bias_swiglu_backward<R: CubeRuntime>(
    gate: CubeTensor<R>,
    gate_bias: CubeTensor<R>,
    x: CubeTensor<R>,
    x_bias: CubeTensor<R>,
    grad: CubeTensor<R>,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let (gate, gate_bias) = (into_contiguous(gate), into_contiguous(gate_bias));
    let (input, input_bias) = (into_contiguous(x), into_contiguous(x_bias));
    let grad = into_contiguous(grad);
    let (gate_grad, cube_count, cube_dim) = elementwise(&gate);
    let input_grad = empty_device_dtype(
        gate.client.clone(),
        gate.device.clone(),
        gate.shape(),
        gate.dtype,
    );
    let dtype = gate.dtype;
    unsafe {
        bias_swiglu_backward_kernel::launch_unchecked(
            &gate_grad.client,
            cube_count,
            cube_dim,
            address_type!(
                gate, gate_bias, input, input_bias, grad, gate_grad, input_grad
            ),
            gate.into_linear_view(),
            gate_bias.into_tensor_arg(),
            input.into_linear_view(),
            input_bias.into_tensor_arg(),
            grad.into_linear_view(),
            gate_grad.clone().into_linear_view(),
            input_grad.clone().into_linear_view(),
            dtype.into(),
        );
    }
    (gate_grad, input_grad)
}
