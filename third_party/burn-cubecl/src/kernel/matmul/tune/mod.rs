// realsyn: compiled without the `autotune` feature too, for `REALSYN_MATMUL=autotune`
// (`super::base::MatmulStrategy::from_env`).
mod base;

pub use base::matmul_autotune;
