//! # realsyn-eval
//!
//! Evaluation as CLIP_benchmark does it, on the RealSyn paper's benchmarks. This crate
//! owns the benchmark registry (`registry`, data under `eval/`), the dataset readers
//! for the layouts of the official releases and for users' own sets (`datasets`, from
//! `realsyn_data::labelled`),
//! frozen image features and their on-disk cache (`features`, `cache`), the tasks
//! (zero-shot classification; the linear probe; retrieval), their metrics, the suite runner, the result files, the
//! report beside the paper's tables, and the data-scaling-law fits (`scaling`).
//!
//! Takes any `DualEncoder` of the model library. Must not depend on the trainer, the
//! builder or the runtime; clap only behind its `clap` feature (the CLI's).

pub mod cache;
pub mod features;
pub mod linear_probe;
pub mod registry;
pub mod report;
pub mod results;
pub mod retrieval;
pub mod scaling;
pub mod suite;
pub mod zeroshot;

/// The dataset readers live in `realsyn-data` (the trainer's zero-shot hook reads
/// them too); `realsyn_eval::datasets` names them as before.
pub use realsyn_data::labelled as datasets;
pub use realsyn_data::labelled::metrics;

pub use datasets::LabelledDataset;
pub use features::{Features, image_features};
pub use metrics::ClassificationMetrics;
pub use registry::{Registry, Suite, TemplateSet};
pub use retrieval::retrieval_recalls;
pub use zeroshot::{ZeroShotMetrics, zero_shot_eval};
