//! The RealSyn builder: interleaved documents in, an image store and a sentence
//! store out, each filtered and deduplicated (paper §3.1, Fig. 2), then every
//! image paired with its nearest sentences (§3.2, Fig. 3), a synthetic text
//! generated, the pairs balanced (§3.3) and the dataset written (Table 13), with a
//! funnel that counts every drop and its reason.
//!
//! One folder per paper phase, each holding its library code and its stage(s):
//!
//! - `extract`: documents (`ingest`, `document`), URL images (`fetch`), image rules
//!   and hashes (`images`), Punkt (`punkt`); the `extract` stage.
//! - `filter`: sentence rules, the CAT filter, entropy, GPT-2 perplexity; the
//!   `filter-text` stage.
//! - `dedup`: union-find and near-duplicate linking (`link`); the `dedup-text`,
//!   `dedup-text-semantic` and `dedup-images` stages.
//! - `cluster`: spherical k-means as faiss runs it (flat and two-level), exact top-m
//!   search by GEMM, the inverted file; the `cluster-text` stage.
//! - `retrieve`: the `retrieve` stage (hierarchical top-3 per image), pure images
//!   (`pair_images`), the own-page check.
//! - `generate`: captions, open-set tags, the LLM merge; the `generate` stage.
//! - `balance`: semantic balance sampling's arithmetic; the `balance` stage.
//! - `write`: the dataset's files (WebDataset samples, parquet, the released format
//!   both ways); the `write` stage.
//!
//! Shared by the phases: `store` (the manifest and build recipe, parts, funnel,
//! JSON lines), `pipeline` (the stages as one ordered list, `pipeline::STAGES`, each
//! a type naming its paper step, recipe keys, fan-out and models; `build all`),
//! `embed` (the embedder traits models plug into), `report` (the dataset report's
//! numbers and charts) and `view` (the browser view).
//!
//! Must not depend on Burn or the model library: models reach the stages through
//! `ImageEmbedder`, `TextEmbedder`, `DualEmbedder`, `PerplexityScorer`, `ChatLlm`
//! and `Captioner` (`realsyn-runtime` adapts the model library's to them).

pub mod balance;
pub mod cluster;
pub mod dedup;
pub mod embed;
pub mod extract;
pub mod filter;
pub mod generate;
pub mod pipeline;
pub mod report;
pub mod retrieve;
pub mod store;
pub mod view;
pub mod write;

pub use extract::document::{Document, Item};
pub use extract::punkt::{PunktParameters, SentenceSplitter};
pub use store::funnel::Funnel;
pub use store::shard::ShardSpec;
