//! EVA02's 2-D rotary position embedding: timm's `RotaryEmbeddingCat` as `Eva` builds
//! it (`in_pixels=False`, temperature 10,000, an 'ij' grid, interleaved pairs), applied
//! to the patch tokens of q and k, never to the class token.
//!
//! Each head's `d` channels are `d/4` frequencies x {row, column} x {sin pair}: channel
//! `2c` and `2c+1` rotate together by angle `pos * band`, where the first `d/4` pairs
//! use the row position and the rest the column position. Positions are rescaled onto
//! the reference grid the model was trained at (`ref_feat_shape`: 16x16 for EVA02-CLIP),
//! which is how a 24x24 grid at 336 px reuses the 224-px frequencies.

use burn::tensor::backend::Backend;

use crate::common::rotary::{RotaryPairs, RotaryTables, signed_sin};

/// `sin` and `cos`, each `[grid * grid, head_dim]` (row-major tokens), as timm computes
/// them in f32.
pub fn rope_tables(grid: usize, head_dim: usize, ref_grid: usize) -> (Vec<f32>, Vec<f32>) {
    let bands_n = head_dim / 4;
    // timm `freq_bands(step=1)`: 1 / 10000^(j / n), the exponent in f32.
    let bands: Vec<f32> = (0..bands_n)
        .map(|j| 1.0 / 10_000f32.powf(j as f32 / bands_n as f32))
        .collect();
    // timm `_build_grid` with `ref_feat_shape`: index / size * reference, in f32.
    let coord = |i: usize| i as f32 / grid as f32 * ref_grid as f32;
    let mut sin = Vec::with_capacity(grid * grid * head_dim);
    let mut cos = Vec::with_capacity(grid * grid * head_dim);
    for row in 0..grid {
        for col in 0..grid {
            for axis in [coord(row), coord(col)] {
                for b in &bands {
                    let angle = axis * b;
                    // repeat_interleave(2): both channels of a pair share the angle.
                    sin.extend([angle.sin(); 2]);
                    cos.extend([angle.cos(); 2]);
                }
            }
        }
    }
    (sin, cos)
}

/// The tables as `[1, 1, 1 + tokens, head_dim]` tensors (`common::rotary`), rotating
/// `[batch, heads, 1 + patches, head_dim]` in one pass. Row 0 is the class token's:
/// cos 1 and sin 0, so the class token is kept as it is without slicing it off and
/// back on.
pub fn rotary<B: Backend>(
    grid: usize,
    head_dim: usize,
    ref_grid: usize,
    device: &B::Device,
) -> RotaryTables<B> {
    let (sin, cos) = rope_tables(grid, head_dim, ref_grid);
    let mut cos_all = vec![1.0f32; head_dim];
    cos_all.extend(cos);
    // The class token's sin is +0.0 on both channels: `x * 1 + y * 0` is `x`.
    let mut sin_all = vec![0.0f32; head_dim];
    sin_all.extend(signed_sin(RotaryPairs::Interleaved, &sin, head_dim));
    RotaryTables::new(cos_all, sin_all, head_dim, RotaryPairs::Interleaved, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Tensor, TensorData};

    #[test]
    fn tables_follow_timm_layout() {
        // grid 2, head_dim 8 -> 2 bands: [1, 1/100]; positions 0 and 0.5 * ref.
        let (sin, cos) = rope_tables(2, 8, 16);
        assert_eq!(sin.len(), 4 * 8);
        // token 0 (row 0, col 0): every angle 0.
        assert!(sin[..8].iter().all(|&s| s == 0.0) && cos[..8].iter().all(|&c| c == 1.0));
        // token 1 (row 0, col 1 -> coordinate 8): row pairs 0, column pairs 8 * band.
        let t1 = &sin[8..16];
        assert_eq!(&t1[..4], &[0.0; 4]);
        assert_eq!(t1[4], 8f32.sin());
        assert_eq!(t1[5], 8f32.sin());
        assert_eq!(t1[6], (8f32 * 0.01).sin());
        // token 2 (row 1, col 0): row pairs rotate.
        assert_eq!(sin[16], 8f32.sin());
        assert_eq!(sin[20], 0.0);
    }

    /// `apply` against timm's definition written out per element: the class token kept,
    /// each pair (a, b) of a patch token mapped to (a cos - b sin, b cos + a sin).
    #[test]
    fn apply_rotates_pairs_of_patch_tokens_and_keeps_the_class_token() {
        type B = crate::backend::Cpu;
        let (grid, d, heads, batch) = (3, 8, 2, 2);
        let n = 1 + grid * grid;
        let (sin, cos) = rope_tables(grid, d, 16);
        let len = batch * heads * n * d;
        let x: Vec<f32> = (0..len)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let device = Default::default();
        let rope = rotary::<B>(grid, d, 16, &device);
        let input =
            Tensor::<B, 4>::from_data(TensorData::new(x.clone(), [batch, heads, n, d]), &device);
        let out = rope.apply(input).into_data().to_vec::<f32>().unwrap();
        for bh in 0..batch * heads {
            for t in 0..n {
                for c in (0..d).step_by(2) {
                    let at = (bh * n + t) * d + c;
                    let (a, b) = (x[at], x[at + 1]);
                    let want = if t == 0 {
                        (a, b)
                    } else {
                        let k = (t - 1) * d + c;
                        (a * cos[k] - b * sin[k], b * cos[k + 1] + a * sin[k + 1])
                    };
                    assert_eq!(
                        (out[at], out[at + 1]),
                        want,
                        "batch*head {bh}, token {t}, pair {c}"
                    );
                }
            }
        }
    }
}
