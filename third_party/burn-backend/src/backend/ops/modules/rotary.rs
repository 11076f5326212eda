//! realsyn patch (PATCHES.md): a rotary position embedding's rotation as one op,
//! `x * cos + swap(x) * signed_sin`, and its gradient.
//!
//! `swap` exchanges the two channels of each rotated pair and `signed_sin` is the
//! table of sines with each pair's first channel negated, so that a pair `(a, b)`
//! becomes `(a cos - b sin, b cos + a sin)`. Decomposed, the rotation is a flip (a
//! copy), two products and an addition, and its gradient as many again, for q and k
//! of every attention with a rotary embedding (EVA02's vision blocks, Llama's).

use crate::Backend;
use crate::TensorMetadata;
use crate::tensor::FloatTensor;
use burn_std::Shape;

/// Where the two channels of a rotated pair sit within a head's `d` channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RotaryPairs {
    /// Channels `2i` and `2i + 1` (timm's `RotaryEmbeddingCat`, EVA02).
    Interleaved,
    /// Channels `i` and `i + d/2` (Hugging Face's `rotate_half`, Llama).
    Halves,
}

impl RotaryPairs {
    /// The other channel of channel `c`'s pair, among `d`.
    pub fn partner(self, c: usize, d: usize) -> usize {
        match self {
            RotaryPairs::Interleaved => c ^ 1,
            RotaryPairs::Halves if c < d / 2 => c + d / 2,
            RotaryPairs::Halves => c - d / 2,
        }
    }
}

/// Whether `x` and the tables take a backend's one-pass rotation: one float type, an
/// even last dimension, and tables `[1, .., 1, n, d]` of `x`'s rank whose `n` rows
/// are the last rows of `x` (`[.., n, d]`), repeated over its leading dimensions.
pub fn rotary_fits(
    x: &impl TensorMetadata,
    cos: &impl TensorMetadata,
    signed_sin: &impl TensorMetadata,
) -> bool {
    let (xs, ts) = (x.shape(), cos.shape());
    let rank = xs.num_dims();
    rank >= 2
        && ts.num_dims() == rank
        && signed_sin.shape() == ts
        && xs[rank - 1] % 2 == 0
        && ts[rank - 1] == xs[rank - 1]
        && ts[rank - 2] == xs[rank - 2]
        && (0..rank - 2).all(|i| ts[i] == 1)
        && cos.dtype() == x.dtype()
        && signed_sin.dtype() == x.dtype()
}

/// Default [rotary](crate::ops::ModuleOps::rotary): the pairs swapped by a flip of an
/// axis of size 2, then `x * cos + swapped * signed_sin` (broadcasting the tables).
pub fn rotary_from_float_ops<B: Backend>(
    x: FloatTensor<B>,
    cos: FloatTensor<B>,
    signed_sin: FloatTensor<B>,
    pairs: RotaryPairs,
) -> FloatTensor<B> {
    let swapped = swap::<B>(x.clone(), pairs);
    B::float_add(B::float_mul(x, cos), B::float_mul(swapped, signed_sin))
}

/// Default [rotary_backward](crate::ops::ModuleOps::rotary_backward): the rotation is
/// `C x + S P x` with `P` the swap (its own transpose), so the gradient is
/// `C g + P (S g)`.
pub fn rotary_backward_from_float_ops<B: Backend>(
    output_grad: FloatTensor<B>,
    cos: FloatTensor<B>,
    signed_sin: FloatTensor<B>,
    pairs: RotaryPairs,
) -> FloatTensor<B> {
    let sin_part = swap::<B>(B::float_mul(output_grad.clone(), signed_sin), pairs);
    B::float_add(B::float_mul(output_grad, cos), sin_part)
}

/// Each pair's two channels exchanged, over the last dimension.
fn swap<B: Backend>(x: FloatTensor<B>, pairs: RotaryPairs) -> FloatTensor<B> {
    let shape = x.shape();
    let rank = shape.num_dims();
    let d = shape[rank - 1];
    let mut split: alloc::vec::Vec<usize> = shape.iter().take(rank - 1).copied().collect();
    let axis = match pairs {
        RotaryPairs::Interleaved => {
            split.extend([d / 2, 2]);
            rank
        }
        RotaryPairs::Halves => {
            split.extend([2, d / 2]);
            rank - 1
        }
    };
    let flipped = B::float_flip(B::float_reshape(x, Shape::from(split)), &[axis]);
    B::float_reshape(flipped, shape)
}
