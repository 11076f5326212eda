//! WebDataset shards: the format img2dataset writes and open_clip reads.
//!
//! The `webdataset` crate (a port of the Python library) provides the tar parsing,
//! the grouping of `KEY.ext` members into samples, brace expansion and the tar
//! writer. This module adds what training needs on top: shard lists with
//! `sizes.json`, per-rank shard splits, skip accounting, and atomic shard writes.

mod reader;
mod shards;
mod skips;
mod subset;
mod writer;

pub use reader::{RawSample, read_shard};
pub use shards::{ShardList, expand_shards, split_for_rank};
pub use skips::{SkipCounter, SkipLine, SkipLog, read_skip_log};
pub use subset::write_subset;
pub use writer::ShardWriter;
