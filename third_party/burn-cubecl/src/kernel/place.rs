//! Many 1-d tensors copied into one buffer at given offsets, converted to its float
//! type, in a few kernels (realsyn patch, PATCHES.md): the backend's
//! `FloatTensorOps::float_place`.
//!
//! The training step packs each backward pass's ~300 gradients into one buffer
//! (so that sums, the all-reduce, the norm and the optimiser are a few kernels over
//! it); by the default, a zero fill and a slice-assign kernel per gradient. Here
//! one launch copies up to [`PARTS_PER_LAUNCH`] parts: cube row `y` copies part `y`,
//! the row's cubes striding over its elements. A kernel takes its parts as a
//! compile-time sequence, so one kernel is compiled per number of parts.

use burn_backend::{DType, TensorMetadata};
use cubecl::prelude::*;

use crate::{
    CubeRuntime,
    kernel::into_contiguous,
    ops::numeric::zeros,
    tensor::CubeTensor,
};

/// Parts per launch, within every runtime's binding limit (Vulkan's can be 8 or
/// fewer: CubeCL's `max_bindings` lowers it further where needed).
pub const PARTS_PER_LAUNCH: usize = 32;

#[cube(launch_unchecked, address_type = "dynamic")]
fn place_kernel<I: Float, O: Float>(
    parts: &Sequence<Tensor<I>>,
    offsets: Sequence<usize>,
    lens: Sequence<usize>,
    output: &mut Tensor<O>,
    #[define(I, O)] _dtypes: [StorageType; 2],
) {
    let count = comptime!(parts.len());
    let stride = CUBE_COUNT_X as usize * CUBE_DIM_X as usize;
    #[unroll]
    for i in 0..count {
        if CUBE_POS_Y as usize == i {
            let part = parts.index(i);
            let offset = *offsets.index(i);
            let len = *lens.index(i);
            let mut pos = ABSOLUTE_POS_X as usize;
            while pos < len {
                output[offset + pos] = O::cast_from(part[pos]);
                pos += stride;
            }
        }
    }
}

/// `parts` at `offsets` in `len` zeros of `dtype`.
pub fn place<R: CubeRuntime>(
    parts: Vec<CubeTensor<R>>,
    offsets: &[usize],
    len: usize,
    dtype: DType,
) -> CubeTensor<R> {
    let first = parts.first().expect("at least one part");
    let (client, device) = (first.client.clone(), first.device.clone());
    let part_dtype = first.dtype;
    let output = zeros(device, [len].into(), dtype);
    let bindings = client.properties().hardware.max_bindings as usize;
    // The output is a binding too.
    let per_launch = PARTS_PER_LAUNCH.min(bindings.saturating_sub(1)).max(1);
    let parts: Vec<CubeTensor<R>> = parts.into_iter().map(into_contiguous).collect();
    for (chunk, at) in parts.chunks(per_launch).zip(offsets.chunks(per_launch)) {
        let longest = chunk.iter().map(|p| p.meta.num_elements()).max().unwrap_or(0);
        let cube_dim = CubeDim::new_1d(256);
        // Enough cubes per part for the longest one to take a few strides.
        let cubes_x = longest.div_ceil(256 * 4).clamp(1, 1024) as u32;
        let cube_count = CubeCount::Static(cubes_x, chunk.len() as u32, 1);
        let address = chunk
            .iter()
            .map(|p| p.required_address_type())
            .chain([output.required_address_type()])
            .max()
            .unwrap_or_default();
        let mut tensors = SequenceArg::new();
        let mut offsets = SequenceArg::new();
        let mut lens = SequenceArg::new();
        for (part, &offset) in chunk.iter().zip(at) {
            lens.push(part.meta.num_elements());
            offsets.push(offset);
            tensors.push(part.clone().into_tensor_arg());
        }
        unsafe {
            place_kernel::launch_unchecked(
                &client,
                cube_count,
                cube_dim,
                address,
                tensors,
                offsets,
                lens,
                output.clone().into_tensor_arg(),
                [part_dtype.into(), dtype.into()],
            );
        }
    }
    output
}
