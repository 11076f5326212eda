//! # realsyn-data
//!
//! Data plumbing shared by the builder, the trainer, the evaluator and the CLI:
//! image decoding and CLIP's image transforms (one implementation of each), and
//! `.npy` array files. Shard reading/writing joins this crate with the trainer.

pub mod fs;
pub mod image;
pub mod npy;

pub use image::{EvalTransform, OPENAI_MEAN, OPENAI_STD, decode_image, load_image};
