//! The backends realsyn is built and tested with, named once.

/// Default CPU backend: Burn's pure-Rust `flex` (SIMD + rayon).
pub type Cpu = burn::backend::Flex;
/// CPU backend with autodiff, for training.
pub type CpuAutodiff = burn::backend::Autodiff<Cpu>;

#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;
#[cfg(feature = "cuda")]
pub type CudaAutodiff = burn::backend::Autodiff<Cuda>;

/// Burn's CubeCL backend on Vulkan: the GPU path's kernels without CUDA (on the CPU
/// through Mesa's lavapipe, benches/cubecl_cpu.sh).
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;
