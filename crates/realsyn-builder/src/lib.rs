//! The first half of the RealSyn builder (paper section 3.1, SPEC.md 1.1): interleaved
//! documents in, an image store and a sentence store out, each filtered and
//! deduplicated, with a funnel that counts every drop and its reason.
//!
//! - `punkt`: NLTK's Punkt sentence segmentation on stable Rust.

pub mod punkt;

pub use punkt::{PunktParameters, SentenceSplitter};
