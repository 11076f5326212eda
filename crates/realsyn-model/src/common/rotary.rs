//! The rotation of a rotary position embedding, shared by EVA02 (timm's interleaved
//! pairs) and Llama (Hugging Face's "rotate half"): `x * cos + rot(x) * sin`, where
//! `rot` maps each pair `(a, b)` of channels to `(-b, a)`.
//!
//! `rot(x) * sin` is computed as the pairs swapped times a table whose sin carries the
//! rotation's sign (`-sin` on each pair's first channel): the same products as the
//! reference definitions (negation is exact), without their strided slices, negation
//! and concatenation. The whole rotation is one op of the patched Burn
//! (`ModuleOps::rotary`, third_party/burn-backend): one pass each way on the CPU and
//! CubeCL backends, a flip, two products and an addition elsewhere.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

/// Where the two channels of a rotated pair sit: the patched Burn's own enum, which
/// its rotary kernels take.
pub use burn::tensor::ops::RotaryPairs;

/// Whether channel `c` of `d` is the first of its pair (its sin is negated).
pub fn is_first(pairs: RotaryPairs, c: usize, d: usize) -> bool {
    pairs.partner(c, d) > c
}

/// A sin table `[.., d]` (rows of `d`) with each pair's first channel negated.
pub fn signed_sin(pairs: RotaryPairs, sin: &[f32], d: usize) -> Vec<f32> {
    sin.iter()
        .enumerate()
        .map(|(i, &s)| if is_first(pairs, i % d, d) { -s } else { s })
        .collect()
}

/// A rotary embedding's tables for a run of tokens, `[1, 1, tokens, d]`, ready to
/// broadcast over batch and heads, with the layout of their pairs.
pub struct RotaryTables<B: Backend> {
    cos: Tensor<B, 4>,
    signed_sin: Tensor<B, 4>,
    pairs: RotaryPairs,
}

impl<B: Backend> RotaryTables<B> {
    /// `cos` and `signed_sin` (from [`signed_sin`]) row-major, `d` per token.
    pub fn new(
        cos: Vec<f32>,
        signed_sin: Vec<f32>,
        d: usize,
        pairs: RotaryPairs,
        device: &B::Device,
    ) -> Self {
        let shape = [1, 1, cos.len() / d, d];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            signed_sin: Tensor::from_data(TensorData::new(signed_sin, shape), device),
            pairs,
        }
    }

    /// The tables in `dtype` (the activations' dtype: bf16 under mixed precision).
    pub fn cast(self, dtype: DType) -> Self {
        if self.cos.dtype() == dtype {
            return self;
        }
        Self {
            cos: self.cos.cast(dtype),
            signed_sin: self.signed_sin.cast(dtype),
            pairs: self.pairs,
        }
    }

    /// `x * cos + swap(x) * signed_sin`, `x`: `[batch, heads, tokens, d]`: one op of
    /// the patched Burn (`ModuleOps::rotary`, one pass each way on the CPU and CubeCL
    /// backends, where the decomposition was a flip, two products and an addition).
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = B::rotary(
            x.into_primitive().tensor(),
            self.cos.clone().into_primitive().tensor(),
            self.signed_sin.clone().into_primitive().tensor(),
            self.pairs,
        );
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both layouts against the reference definition per element (Hugging Face's
    /// `x * cos + cat(-x2, x1) * sin`, timm's pairs `(a cos - b sin, b cos + a sin)`):
    /// the same products, so exactly equal.
    #[test]
    fn rotate_matches_the_reference_per_element() {
        type B = crate::backend::Cpu;
        let (batch, heads, n, d) = (2, 3, 5, 8);
        let x: Vec<f32> = (0..batch * heads * n * d)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let cos: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.3).cos()).collect();
        let sin: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.3).sin()).collect();
        let device = Default::default();
        for pairs in [RotaryPairs::Interleaved, RotaryPairs::Halves] {
            let input = Tensor::<B, 4>::from_data(
                TensorData::new(x.clone(), [batch, heads, n, d]),
                &device,
            );
            let tables =
                RotaryTables::<B>::new(cos.clone(), signed_sin(pairs, &sin, d), d, pairs, &device);
            let out = tables.apply(input);
            let out = out.into_data().to_vec::<f32>().unwrap();
            for row in 0..batch * heads * n {
                let t = row % n;
                for c in 0..d {
                    let partner = match pairs {
                        RotaryPairs::Interleaved => c ^ 1,
                        RotaryPairs::Halves => (c + d / 2) % d,
                    };
                    let (xc, xp) = (x[row * d + c], x[row * d + partner]);
                    let rot = if is_first(pairs, c, d) { -xp } else { xp };
                    let k = t * d + c;
                    let want = xc * cos[k] + rot * sin[k];
                    assert_eq!(out[row * d + c], want, "{pairs:?}, row {row}, channel {c}");
                }
            }
        }
    }
}
