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
use burn::tensor::{DType, Tensor, TensorData};

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

/// The tables as `[1, 1, tokens, head_dim]` tensors, ready to broadcast over batch and heads.
pub struct Rope<B: Backend> {
    sin: Tensor<B, 4>,
    cos: Tensor<B, 4>,
}

impl<B: Backend> Rope<B> {
    pub fn new(grid: usize, head_dim: usize, ref_grid: usize, device: &B::Device) -> Self {
        let (sin, cos) = rope_tables(grid, head_dim, ref_grid);
        let shape = [1, 1, grid * grid, head_dim];
        Self {
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
        }
    }

    /// The tables in `dtype` (the activations' dtype: bf16 under mixed precision).
    pub fn cast(self, dtype: DType) -> Self {
        if self.sin.dtype() == dtype {
            return self;
        }
        Self {
            sin: self.sin.cast(dtype),
            cos: self.cos.cast(dtype),
        }
    }

    /// `x`: `[batch, heads, 1 + patches, head_dim]`; rotates the patch tokens
    /// (`x * cos + rot(x) * sin`, `rot` mapping each pair (a, b) to (-b, a)) and keeps
    /// the class token as it is.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, n, d] = x.dims();
        let cls = x.clone().slice([0..b, 0..h, 0..1]);
        let patches = x.slice([0..b, 0..h, 1..n]);
        let m = n - 1;
        let pairs = patches.clone().reshape([b, h, m, d / 2, 2]);
        let even = pairs.clone().slice([0..b, 0..h, 0..m, 0..d / 2, 0..1]);
        let odd = pairs.slice([0..b, 0..h, 0..m, 0..d / 2, 1..2]);
        let rotated = Tensor::cat(vec![odd.neg(), even], 4).reshape([b, h, m, d]);
        let patches = patches * self.cos.clone() + rotated * self.sin.clone();
        Tensor::cat(vec![cls, patches], 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
