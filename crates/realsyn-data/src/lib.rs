//! # realsyn-data
//!
//! Data plumbing shared by the builder, the trainer, the evaluator and the CLI:
//! image decoding and CLIP's image transforms (one implementation of each), and
//! `.npy` array files; WebDataset shards (`wds`), the candidate texts of a sample
//! (`texts`), and the streaming training pipeline (`loader`).

pub mod datasets;
pub mod image;
pub mod loader;
pub mod plot;
pub mod progress;
pub mod texts;
pub mod wds;

pub use image::{
    EvalTransform, ImageTransform, OPENAI_MEAN, OPENAI_STD, RandomResizedCrop, decode_image,
    load_image,
};
pub use loader::{Batch, DataPosition, EpochLoader, LoaderConfig};
pub use texts::TextKeys;
