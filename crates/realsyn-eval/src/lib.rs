//! # realsyn-eval
//!
//! Evaluation as CLIP_benchmark does it. This crate owns the labelled-dataset
//! reader (CLIP_benchmark's WebDataset layout), frozen image features (computed once,
//! shared by the tasks), zero-shot classification (which the
//! trainer also calls as its periodic evaluation hook), the linear probe and the
//! retrieval metrics.

pub mod features;
pub mod labelled;
pub mod linear_probe;
pub mod retrieval;
pub mod zeroshot;

pub use features::{Features, image_features};
pub use labelled::LabelledDataset;
pub use retrieval::retrieval_recalls;
pub use zeroshot::{ZeroShotMetrics, zero_shot_classifier, zero_shot_eval};
