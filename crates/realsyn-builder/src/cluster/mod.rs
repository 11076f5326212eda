//! Vector clustering and search for the second half of the builder (paper §3.2,
//! Fig. 3): spherical k-means as faiss runs it (flat, and two-level for the paper's
//! 2M clusters), and inner-product top-m search by blocked GEMM. The `cluster-text`
//! and `retrieve` stages use both; the balance stage reuses `kmeans` on images.
//!
//! Plain f32 slices in, plain results out: no store layout, no models.

pub mod ivf;
pub mod kmeans;
pub mod search;

pub use kmeans::{KMeans, KMeansParams, train, train_two_level};
pub use search::{TopM, top_m};
