//! Many 1-d tensors copied into one buffer at given offsets, converted to its float
//! type, in a few kernels (realsyn patch, PATCHES.md): the backend's
//! `FloatTensorOps::float_place`.
//!
//! The training step packs each backward pass's ~300 gradients into one buffer
//! (so that sums, the all-reduce, the norm and the optimiser are a few kernels over
//! it); by the default, a zero fill and a slice-assign kernel per gradient. Here
//! one launch copies up to [`PARTS_PER_LAUNCH`] parts: each part gets as many cubes
//! as its length needs ([`ELEMS_PER_CUBE`] elements each), and a cube finds its part
//! among the launch's (a comparison per part, unrolled). A kernel takes its parts as
//! a compile-time sequence, so one kernel is compiled per number of parts.

use burn_backend::{DType, TensorMetadata};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use crate::{
    CubeRuntime,
    kernel::into_contiguous,
    ops::numeric::{empty_device_dtype, zeros},
    tensor::CubeTensor,
};

/// Parts per launch. On lavapipe (Vulkan on the CPU, where this is checked) a
/// launch's time grew faster than its parts beyond 8: 301 parts of 11.2M elements
/// took 0.08 s at 4 or 8 per launch, 0.15 s at 16 and 0.38 s at 32, against 0.06 s
/// for a slice-assign kernel each. On a GPU the part a cube copies is uniform across
/// it, so more per launch should cost nothing; to be measured there. CubeCL's
/// `max_bindings` lowers it where a runtime binds fewer buffers.
pub const PARTS_PER_LAUNCH: usize = 8;

const UNITS: usize = 256;
const ELEMS_PER_UNIT: usize = 4;
/// Elements one cube copies.
pub const ELEMS_PER_CUBE: usize = UNITS * ELEMS_PER_UNIT;

#[cube(launch_unchecked, address_type = "dynamic")]
fn place_kernel<I: Float, O: Float>(
    parts: &Sequence<Tensor<I>>,
    offsets: Sequence<usize>,
    lens: Sequence<usize>,
    // The first cube of each part, then the number of cubes: parts.len() + 1 values.
    first_cubes: Sequence<usize>,
    output: &mut Tensor<O>,
    #[define(I, O)] _dtypes: [StorageType; 2],
) {
    let count = comptime!(parts.len());
    let cube = CUBE_POS as usize;
    #[unroll]
    for i in 0..count {
        let (first, next) = (*first_cubes.index(i), *first_cubes.index(i + 1));
        if cube >= first && cube < next {
            let part = parts.index(i);
            let offset = *offsets.index(i);
            let len = *lens.index(i);
            let base = (cube - first) * comptime!(ELEMS_PER_CUBE) + UNIT_POS as usize;
            #[unroll]
            for e in 0..ELEMS_PER_UNIT {
                let pos = base + e * comptime!(UNITS);
                if pos < len {
                    output[offset + pos] = O::cast_from(part[pos]);
                }
            }
        }
    }
}

/// `parts` at `offsets` in `len` zeros of `dtype` (no zeros when the parts cover it).
pub fn place<R: CubeRuntime>(
    parts: Vec<CubeTensor<R>>,
    offsets: &[usize],
    len: usize,
    dtype: DType,
) -> CubeTensor<R> {
    let first = parts.first().expect("at least one part");
    let (client, device) = (first.client.clone(), first.device.clone());
    let part_dtype = first.dtype;
    // The parts do not overlap: when their lengths add up to the buffer's, they
    // cover it and no zeros are needed (a concatenation).
    let covered: usize = parts.iter().map(|p| p.meta.num_elements()).sum();
    let output = if covered == len {
        empty_device_dtype(client.clone(), device, [len].into(), dtype)
    } else {
        zeros(device, [len].into(), dtype)
    };
    let bindings = client.properties().hardware.max_bindings as usize;
    // The output is a binding too.
    let per_launch = PARTS_PER_LAUNCH.min(bindings.saturating_sub(1)).max(1);
    let parts: Vec<CubeTensor<R>> = parts.into_iter().map(into_contiguous).collect();
    for (chunk, at) in parts.chunks(per_launch).zip(offsets.chunks(per_launch)) {
        let mut tensors = SequenceArg::new();
        let mut offsets = SequenceArg::new();
        let mut lens = SequenceArg::new();
        let mut first_cubes = SequenceArg::new();
        let mut cubes = 0;
        for (part, &offset) in chunk.iter().zip(at) {
            let len = part.meta.num_elements();
            first_cubes.push(cubes);
            cubes += len.div_ceil(ELEMS_PER_CUBE);
            lens.push(len);
            offsets.push(offset);
            tensors.push(part.clone().into_tensor_arg());
        }
        first_cubes.push(cubes);
        let cube_dim = CubeDim::new_1d(UNITS as u32);
        let cube_count = calculate_cube_count_elemwise(&client, cubes * UNITS, cube_dim);
        let address = chunk
            .iter()
            .map(|p| p.required_address_type())
            .chain([output.required_address_type()])
            .max()
            .unwrap_or_default();
        unsafe {
            place_kernel::launch_unchecked(
                &client,
                cube_count,
                cube_dim,
                address,
                tensors,
                offsets,
                lens,
                first_cubes,
                output.clone().into_tensor_arg(),
                [part_dtype.into(), dtype.into()],
            );
        }
    }
    output
}
