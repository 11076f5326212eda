//! The RealSyn builder: interleaved documents in, an image store and a sentence
//! store out, each filtered and deduplicated (paper §3.1, Fig. 2), then every
//! image paired with its nearest sentences (§3.2, Fig. 3), with a funnel that
//! counts every drop and its reason.
//!
//! - `document`, `ingest`: the normalised document and the readers (HTML, MMC4 JSONL).
//! - `fetch`: URL images, img2dataset-style (timeouts, retries, size cap, opt-out).
//! - `punkt`: NLTK's Punkt sentence segmentation on stable Rust.
//! - `text_filters`, `cat`, `images`: the paper's sentence rules, the CAT complexity +
//!   action filter (WordNet-lexicon tagger), image rules and perceptual hash.
//! - `perplexity`: the GPT-2 perplexity range and the `PerplexityScorer` it plugs into.
//! - `dedup`, `embed`: union-find and non-quadratic near-duplicate linking
//!   (perceptual hashes; embeddings from any `ImageEmbedder` or `TextEmbedder`).
//! - `cluster`: spherical k-means as faiss runs it (flat and two-level), exact top-m
//!   search by GEMM, and hierarchical retrieval over an inverted file.
//! - `balance`, `dataset`, `report`: semantic balance sampling's arithmetic, the
//!   dataset's files (WebDataset samples, parquet, the released format both ways)
//!   and the dataset report's numbers and charts.
//! - `shard`, `funnel`: `--shard i/N` parts written atomically, drop accounting.
//! - `stages`: the stages as one ordered list (`stages::list::STAGES`: extract ->
//!   filter-text -> dedup-text -> dedup-text-semantic -> dedup-images -> cluster-text
//!   -> retrieve -> generate -> balance -> write), each a type
//!   naming its paper step, fan-out and models; the manifest and `build all`.
//!
//! Must not depend on Burn or the model library: models reach the stages through
//! `ImageEmbedder`, `TextEmbedder`, `DualEmbedder` and `PerplexityScorer` (`realsyn-runtime` adapts
//! the model library's to them).

pub mod balance;
pub mod cat;
pub mod cluster;
pub mod dataset;
pub mod dedup;
pub mod document;
pub mod embed;
pub mod fetch;
pub mod funnel;
pub mod generate;
pub mod images;
pub mod ingest;
pub mod own_page;
pub mod perplexity;
pub mod punkt;
pub mod report;
pub mod shard;
pub mod stages;
pub mod text_filters;
pub mod view;

pub use document::{Document, Item};
pub use funnel::Funnel;
pub use punkt::{PunktParameters, SentenceSplitter};
pub use shard::ShardSpec;
