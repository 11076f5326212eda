mod activation;
mod bool_tensor;
mod int_tensor;
mod modules;
mod qtensor;
mod tensor;
mod transaction;

pub(crate) mod argwhere;
/// Concatenation from slice assignments (realsyn patch: public, so a backend's own
/// `float_cat` can fall back to it).
pub mod cat;
pub(crate) mod repeat_dim;
pub(crate) mod sort;

pub use activation::*;
pub use bool_tensor::*;
pub use int_tensor::*;
pub use modules::*;
pub use qtensor::*;
pub use tensor::*;
pub use transaction::*;
