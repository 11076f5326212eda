mod binary;
mod binary_float;
mod binary_int;
mod cast;
mod clamp;
mod comparison;
mod contiguous;
mod cross;
mod index;
mod mask;
mod unary_float;
mod unary_int;
mod unary_numeric;

pub(crate) use binary::*;
pub(crate) use binary_float::*;
pub(crate) use binary_int::*;
pub use cast::*;
pub use contiguous::*;
pub(crate) use cross::*;
pub use mask::*;
pub(crate) use unary_float::*;
pub(crate) use unary_int::*;
pub(crate) use unary_numeric::*;

pub use crate::cubecl::prelude::KernelMetadata;

/// Attention kernels
pub mod attention;
/// Convolution kernels
pub mod conv;
/// CTC loss kernel
pub mod ctc;
/// FFT algorithms
pub mod fft;
/// Grid sampling kernels
pub mod grid_sample;
/// Interpolation kernels
pub mod interpolate;
/// Activation kernels: GELU, sigmoid (realsyn patch, PATCHES.md)
pub mod activation;
/// A linear layer's bias with the GELU or residual addition after it (realsyn patch, PATCHES.md)
pub mod bias;
/// A rotary embedding's rotation in one pass (realsyn patch, PATCHES.md)
pub mod rotary;
/// Layer norm kernels (realsyn patch, PATCHES.md)
pub mod layer_norm;
/// Row reductions of the row kernels (realsyn patch, PATCHES.md)
mod row_reduce;
/// Attention's softmax kernels (realsyn patch, PATCHES.md)
pub mod softmax;
/// Many tensors packed into one buffer (realsyn patch, PATCHES.md)
pub mod place;
/// Matmul kernels
pub mod matmul;

/// realsyn patch (PATCHES.md): whether `REALSYN_KERNELS_STRICT` is set, read once. A
/// kernel named by `REALSYN_MATMUL` or `REALSYN_ATTENTION` that cannot run then panics
/// instead of leaving the work to the default kernel, so that a test or a benchmark
/// knows that what it names is what ran.
pub fn strict_kernels() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("REALSYN_KERNELS_STRICT").is_some_and(|v| v != "0"))
}

/// Pooling kernels
pub mod pool;
/// Pseudo-random number generator kernels
pub mod prng;
/// Quantization operations
pub mod quantization;
/// Reduction algorithms
pub mod reduce;

pub(crate) use clamp::*;
pub(crate) use comparison::*;
pub use index::*;

pub(crate) mod utils;
