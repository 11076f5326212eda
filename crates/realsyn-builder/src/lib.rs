//! The first half of the RealSyn builder (paper §3.1, Fig. 2): interleaved
//! documents in, an image store and a sentence store out, each filtered and
//! deduplicated, with a funnel that counts every drop and its reason.
//!
//! - `document`, `ingest`: the normalised document and the readers (HTML, MMC4 JSONL).
//! - `fetch`: URL images, img2dataset-style (timeouts, retries, size cap, opt-out).
//! - `punkt`: NLTK's Punkt sentence segmentation on stable Rust.
//! - `text_filters`, `cat`, `images`: the paper's sentence rules, the CAT complexity +
//!   action filter (WordNet-lexicon tagger), image rules and perceptual hash.
//! - `perplexity`: the GPT-2 perplexity range and the `PerplexityScorer` it plugs into.
//! - `dedup`, `embed`: union-find and non-quadratic near-duplicate linking
//!   (perceptual hashes; embeddings from any `ImageEmbedder` or `TextEmbedder`).
//! - `shard`, `funnel`: `--shard i/N` parts written atomically, drop accounting.
//! - `stages`: the stages as one ordered list (`stages::list::STAGES`: extract ->
//!   filter-text -> dedup-text -> dedup-text-semantic -> dedup-images), each a type
//!   naming its paper step, fan-out and models; the manifest and `build all`.
//!
//! Must not depend on Burn or the model library: models reach the stages through
//! `ImageEmbedder`, `TextEmbedder` and `PerplexityScorer` (`realsyn-runtime` adapts
//! the model library's to them).

pub mod cat;
pub mod cluster;
pub mod dedup;
pub mod document;
pub mod embed;
pub mod fetch;
pub mod funnel;
pub mod images;
pub mod ingest;
pub mod perplexity;
pub mod punkt;
pub mod shard;
pub mod stages;
pub mod text_filters;

pub use document::{Document, Item};
pub use funnel::Funnel;
pub use punkt::{PunktParameters, SentenceSplitter};
pub use shard::ShardSpec;
