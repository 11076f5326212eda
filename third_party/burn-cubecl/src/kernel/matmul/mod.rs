mod base;
mod tune;

/// Contains utilities for matmul operation
pub mod utils;

pub use base::*;
pub use tune::*;
pub use utils::*;
