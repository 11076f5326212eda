//! Reductions of one row by one cube, for the row kernels (layer norm, attention's
//! softmax) of the realsyn patch (PATCHES.md): each unit folds the elements at its
//! stride, then a tree in shared memory combines the units, with no plane (warp)
//! operations, so the kernels run on every device (CubeCL turns plane operations off
//! on CPU Vulkan drivers such as lavapipe, where they are checked).

use cubecl::prelude::*;

use crate::{CubeRuntime, tensor::CubeTensor};

/// The sum of every unit's `value`, on every unit (`CUBE_DIM` a power of two,
/// `shared` at least `CUBE_DIM` long).
#[cube]
pub(crate) fn cube_sum(shared: &mut SharedMemory<f32>, value: f32) -> f32 {
    cube_fold(shared, value, false)
}

/// The largest of every unit's `value`, on every unit.
#[cube]
pub(crate) fn cube_max(shared: &mut SharedMemory<f32>, value: f32) -> f32 {
    cube_fold(shared, value, true)
}

#[cube]
fn cube_fold(shared: &mut SharedMemory<f32>, value: f32, #[comptime] max: bool) -> f32 {
    shared[UNIT_POS as usize] = value;
    sync_cube();
    let mut active = CUBE_DIM;
    while active > 1 {
        active /= 2;
        if UNIT_POS < active {
            let other = shared[(UNIT_POS + active) as usize];
            let mine = shared[UNIT_POS as usize];
            shared[UNIT_POS as usize] = if max {
                f32::max(mine, other)
            } else {
                mine + other
            };
        }
        sync_cube();
    }
    let total = shared[0];
    // Every unit has read the total before the memory is written again.
    sync_cube();
    total
}

/// One cube of `units` per row; rows beyond one dimension's limit spread over two
/// (the kernels read the linear `CUBE_POS`).
pub(crate) fn one_cube_per_row<R: CubeRuntime>(
    tensor: &CubeTensor<R>,
    rows: usize,
    units: u32,
) -> (CubeCount, CubeDim) {
    let max = tensor.client.properties().hardware.max_cube_count.0 as usize;
    let (x, y) = if rows <= max {
        (rows, 1)
    } else {
        (max, rows.div_ceil(max))
    };
    (CubeCount::Static(x as u32, y as u32, 1), CubeDim::new_1d(units))
}
