//! # realsyn-data
//!
//! Data plumbing shared by the builder, the trainer, the evaluator and the CLI:
//! image decoding, CLIP's image transforms (one implementation of each) and the one
//! list of image extensions (`image`); WebDataset shards (`wds`), the candidate texts
//! of a sample (`texts`), the streaming training pipeline (`loader`), registry
//! datasets, labelled evaluation sets in the layouts of their releases (`labelled`:
//! read by the evaluator and by the trainer's zero-shot hook), progress bars and
//! charts. Files and arrays are `realsyn-io`'s.
//!
//! Must not depend on Burn or the model library.

pub mod datasets;
pub mod image;
pub mod labelled;
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
