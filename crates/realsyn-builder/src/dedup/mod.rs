//! Paper §3.1, deduplication: `link` (union-find and non-quadratic near-duplicate
//! linking: banded perceptual hashes, LSH over embeddings) and the three stages
//! that use it: `text` (near-exact sentence dedup, partitioned by key),
//! `text_semantic` (sentence embeddings) and `images` (perceptual hashes, and image
//! embeddings when an encoder is given).

pub mod images;
pub mod link;
pub mod text;
pub mod text_semantic;
