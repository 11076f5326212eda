//! # realsyn-io
//!
//! The bottom of the workspace: what every other crate shares and nothing of realsyn
//! underneath it.
//!
//! - `fs`: atomic writes (temp file + rename) and the asset cache directory.
//! - `hash`: FNV-1a, the stable hash behind every key that must not change.
//! - `npy`: NumPy `.npy` arrays (f32, f16, i32, i64), the exchange format with Python;
//!   memory-mapped matrices and row-streamed writes for stores larger than memory.
//! - `embeddings`: an embedding matrix (`Embeddings`: rows x width, f32 in memory,
//!   f32 or f16 on disk) and `encode_in_batches`, the one batched-encoding loop every
//!   embedding path runs (embed, eval features, the builder's dedup, clustering and
//!   balance stages).
//! - `limits`: the caps on hostile input (page size, nesting, pixels, template
//!   fuel), each with a default a user can raise through the environment.
//! - `recipe`: TOML recipes (training and build): nesting cap, `--set` overrides,
//!   unknown keys refused.
//!
//! Must not depend on Burn, image decoding or any other realsyn crate.

pub mod embeddings;
pub mod fs;
pub mod hash;
pub mod limits;
pub mod npy;
pub mod recipe;

pub use embeddings::{Embeddings, encode_in_batches, encode_in_batches_to};
