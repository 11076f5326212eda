//! A rotary position embedding's rotation and its gradient, one element-wise kernel
//! each (realsyn patch, PATCHES.md), where Burn's default is a flip (a copy), two
//! products and an addition each way, for q and k of every attention that rotates
//! (EVA02's vision blocks, Llama's): in an EVA02-B/16 training step, 12 x 2 x 3
//! kernels and as many passes over q and k saved each way.
//!
//! Each output element reads its own channel and its pair's partner (the next or
//! previous channel when pairs are interleaved, the channel half a head away when
//! they are halves), and the tables at its row and channel; the tables' rows repeat
//! over batch and heads. Computed in f32 whatever the tensors' float type.

use burn_backend::ops::RotaryPairs;
use cubecl::prelude::*;
use cubecl::std::tensor::layout::linear::LinearView;

use super::bias::elementwise;
use crate::{
    CubeRuntime,
    kernel::{into_contiguous, utils::address_type},
    tensor::CubeTensor,
};

#[cube(launch_unchecked, address_type = "dynamic")]
fn rotary_kernel<F: Float>(
    input: &LinearView<F>,
    cos: &Tensor<F>,
    signed_sin: &Tensor<F>,
    output: &mut LinearView<F, ReadWrite>,
    d: usize,
    #[comptime] halves: bool,
    #[comptime] backward: bool,
    #[define(F)] _dtype: StorageType,
) {
    if !output.is_in_bounds(ABSOLUTE_POS) {
        terminate!();
    }
    let pos = ABSOLUTE_POS;
    let c = pos % d;
    // The partner's channel: c ^ 1 for interleaved pairs, c +- d/2 for halves.
    let mut partner_c = c + 1 - 2 * (c % 2);
    if halves {
        partner_c = (c + d / 2) % d;
    }
    let row_start = pos - c;
    let t = pos % cos.len();
    // Forward: x[c] cos[c] + x[p] sin[c]. Backward, the transpose: g[c] cos[c] +
    // g[p] sin[p] (the swap is its own transpose, the tables diagonal).
    let mut sin_at = t;
    if backward {
        sin_at = t - c + partner_c;
    }
    let own = f32::cast_from(input[pos]) * f32::cast_from(cos[t]);
    let other = f32::cast_from(input[row_start + partner_c]) * f32::cast_from(signed_sin[sin_at]);
    output[pos] = F::cast_from(own + other);
}

/// `x * cos + swap(x) * signed_sin` (`backward` false) or its gradient, `x` then
/// being the output's gradient: `x * cos + swap(x * signed_sin)`. The caller checks
/// the shapes and types (`burn_backend::ops::rotary::rotary_fits`).
pub fn rotary<R: CubeRuntime>(
    x: CubeTensor<R>,
    cos: CubeTensor<R>,
    signed_sin: CubeTensor<R>,
    pairs: RotaryPairs,
    backward: bool,
) -> CubeTensor<R> {
    let (input, cos, signed_sin) = (
        into_contiguous(x),
        into_contiguous(cos),
        into_contiguous(signed_sin),
    );
    let d = *input
        .meta
        .shape()
        .last()
        .expect("a rotated tensor has a last dimension");
    let (output, cube_count, cube_dim) = elementwise(&input);
    let dtype = input.dtype;
    // SAFETY: every index is below the output's length (bounds-checked above), the
    // tables' length (a remainder) or within the element's own row of `d`.
    unsafe {
        rotary_kernel::launch_unchecked(
            &output.client,
            cube_count,
            cube_dim,
            address_type!(input, cos, signed_sin, output),
            input.into_linear_view(),
            cos.into_tensor_arg(),
            signed_sin.into_tensor_arg(),
            output.clone().into_linear_view(),
            d,
            pairs == RotaryPairs::Halves,
            backward,
            dtype.into(),
        );
    }
    output
}
