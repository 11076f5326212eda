//! A linear layer's bias added by the kernel after the product (realsyn patch,
//! PATCHES.md): `gelu(x + bias)` and its derivative, `x + bias + residual`, and a
//! SwiGLU's gate `silu(g) * u` with `[g, u] = packed + bias` and its gradient.
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

/// `silu(g) * u` with `[g, u] = packed + bias` (a SwiGLU's gated activation), one
/// unit per output element: row `r`, column `j` reads the packed row's `j` and `h + j`.
#[cube(launch_unchecked, address_type = "dynamic")]
fn bias_swiglu_kernel<F: Float>(
    packed: &LinearView<F>,
    bias: &Tensor<F>,
    output: &mut LinearView<F, ReadWrite>,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let h = bias.len() / 2;
    let (j, at) = (ABSOLUTE_POS % h, ABSOLUTE_POS + (ABSOLUTE_POS / h) * h);
    let g = f32::cast_from(packed[at]) + f32::cast_from(bias[j]);
    let u = f32::cast_from(packed[at + h]) + f32::cast_from(bias[j + h]);
    let s = 1.0f32 / (1.0f32 + (-g).exp());
    output[ABSOLUTE_POS] = F::cast_from(g * s * u);
}

/// The packed product's gradient in [`bias_swiglu_kernel`], both halves of a column at
/// once: the gate's `grad u (s + g s (1 - s))` and the other's `grad g s`.
#[cube(launch_unchecked, address_type = "dynamic")]
fn bias_swiglu_backward_kernel<F: Float>(
    packed: &LinearView<F>,
    bias: &Tensor<F>,
    grad: &LinearView<F>,
    packed_grad: &mut LinearView<F, ReadWrite>,
    #[define(F)] _dtype: StorageType,
) {
    if !grad.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let h = bias.len() / 2;
    let (j, at) = (ABSOLUTE_POS % h, ABSOLUTE_POS + (ABSOLUTE_POS / h) * h);
    let g = f32::cast_from(packed[at]) + f32::cast_from(bias[j]);
    let u = f32::cast_from(packed[at + h]) + f32::cast_from(bias[j + h]);
    let dy = f32::cast_from(grad[ABSOLUTE_POS]);
    let s = 1.0f32 / (1.0f32 + (-g).exp());
    let silu_grad = dy * u;
    packed_grad[at] = F::cast_from(silu_grad * s + silu_grad * g * s * (1.0f32 - s));
    packed_grad[at + h] = F::cast_from(dy * (g * s));
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
    let (cube_count, cube_dim) = elementwise_launch(x);
    (output, cube_count, cube_dim)
}

/// The cube count and dimension of a launch with one unit per element of `x`.
fn elementwise_launch<R: CubeRuntime>(x: &CubeTensor<R>) -> (CubeCount, CubeDim) {
    let units = x.meta.num_elements();
    let cube_dim = CubeDim::new(&x.client, units);
    (
        calculate_cube_count_elemwise(&x.client, units, cube_dim),
        cube_dim,
    )
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

/// `silu(g) * u` with `[g, u] = packed + bias` ([`swiglu_fits`]).
pub fn bias_swiglu<R: CubeRuntime>(packed: CubeTensor<R>, bias: CubeTensor<R>) -> CubeTensor<R> {
    let (packed, bias) = (into_contiguous(packed), into_contiguous(bias));
    let mut shape = packed.shape();
    let last = shape.num_dims() - 1;
    shape[last] /= 2;
    let output = empty_device_dtype(
        packed.client.clone(),
        packed.device.clone(),
        shape,
        packed.dtype,
    );
    let (cube_count, cube_dim) = elementwise_launch(&output);
    let dtype = packed.dtype;
    unsafe {
        bias_swiglu_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(packed, bias, output),
            packed.into_linear_view(),
            bias.into_tensor_arg(),
            output.clone().into_linear_view(),
            dtype.into(),
        );
    }
    output
}

/// The packed product's gradient in [`bias_swiglu`] ([`swiglu_fits`]), one kernel.
pub fn bias_swiglu_backward<R: CubeRuntime>(
    packed: CubeTensor<R>,
    bias: CubeTensor<R>,
    grad: CubeTensor<R>,
) -> CubeTensor<R> {
    let (packed, bias) = (into_contiguous(packed), into_contiguous(bias));
    let grad = into_contiguous(grad);
    let packed_grad = empty_device_dtype(
        packed.client.clone(),
        packed.device.clone(),
        packed.shape(),
        packed.dtype,
    );
    // One unit per column of a half: each writes the gate's and the other's gradient.
    let (cube_count, cube_dim) = elementwise_launch(&grad);
    let dtype = packed.dtype;
    unsafe {
        bias_swiglu_backward_kernel::launch_unchecked(
            &packed_grad.client,
            cube_count,
            cube_dim,
            address_type!(packed, bias, grad, packed_grad),
            packed.into_linear_view(),
            bias.into_tensor_arg(),
            grad.into_linear_view(),
            packed_grad.clone().into_linear_view(),
            dtype.into(),
        );
    }
    packed_grad
}

/// Whether the SwiGLU kernels take `packed` and `bias` (and the gradient): one type,
/// an even last dimension as long as the bias, the gradient shaped like `packed` with
/// that dimension halved.
pub fn swiglu_fits<R: CubeRuntime>(
    packed: &CubeTensor<R>,
    bias: &CubeTensor<R>,
    grad: Option<&CubeTensor<R>>,
) -> bool {
    let shape = packed.shape();
    let last = shape.num_dims().saturating_sub(1);
    let halved = || {
        let mut s = shape.clone();
        s[last] /= 2;
        s
    };
    fits(packed, bias, &[])
        && shape[last] % 2 == 0
        && grad.is_none_or(|g| g.dtype == packed.dtype && g.shape() == halved())
}
