//! Paper §3.1, extraction: interleaved documents in, images and sentences out.
//!
//! - `ingest`: the readers (local HTML, MMC4 JSONL, OBELICS parquet, MediaWiki XML)
//!   and the input walk; `document`: the normalised document they all produce.
//! - `fetch`: URL images, img2dataset-style (timeouts, retries, size cap, opt-out).
//! - `images`: the paper's size/aspect rule, header-only sizes, the perceptual hash.
//! - `punkt`: NLTK's Punkt sentence segmentation.
//! - `stage`: the `extract` stage (documents -> image tars + sentence rows + word
//!   counts, per part).

pub mod document;
pub mod fetch;
pub mod images;
pub mod ingest;
pub mod punkt;
pub mod stage;
