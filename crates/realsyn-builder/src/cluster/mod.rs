//! Vector clustering and search for the second half of the builder (paper §3.2,
//! Fig. 3): spherical k-means as faiss runs it (flat, and two-level for the paper's
//! 2M clusters), and inner-product top-m search by blocked GEMM. The `cluster-text`
//! and `retrieve` stages use both; the balance stage reuses `kmeans` on images.
//!
//! Plain f32 slices in, plain results out: no store layout, no models; `fit` is
//! k-means as the stages run it on memory-mapped rows; `stage` is the
//! `cluster-text` stage (sentence embeddings, k-means, the inverted-file layout).
//! The GEMMs run wherever the caller's `VectorSearch` puts them (the CPU here, a
//! Burn device through realsyn-runtime).

pub mod fit;
pub mod ivf;
pub mod kmeans;
pub mod search;
pub mod stage;

/// Sentences per text cluster by default: the paper's 0.84B sentences in 2M
/// clusters.
pub const DEFAULT_SENTENCES_PER_CLUSTER: usize = 420;

pub use kmeans::{KMeans, KMeansParams, train, train_two_level};
pub use search::{CpuSearch, TopM, VectorSearch, top_m};

/// Whether an embedding row can be clustered or searched: finite and not all zero
/// (a zero row has no direction; the stages count the others as skipped).
pub fn usable_row(row: &[f32]) -> bool {
    row.iter().all(|v| v.is_finite()) && row.iter().any(|&v| v != 0.0)
}

/// Synthetic sentence-like embeddings for benches: `n` unit vectors of width `d`
/// around `topics` random centres (row i belongs to topic i mod topics) with
/// Gaussian noise of `noise` per coordinate relative to unit-variance centres
/// (noise 1.0: a row's cosine to its centre is about 0.7). The centres depend on
/// `topics` and `d` only, so rows drawn with another `seed` share them.
pub fn synthetic_topics(n: usize, d: usize, topics: usize, noise: f32, seed: u64) -> Vec<f32> {
    use rand::SeedableRng;
    use rayon::prelude::*;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed ^ (topics as u64) << 8 ^ d as u64);
    let centres: Vec<f32> = (0..topics * d).map(|_| gaussian(&mut rng)).collect();
    let mut x = vec![0f32; n * d];
    x.par_chunks_mut(d * 1024)
        .enumerate()
        .for_each(|(block, rows)| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed << 32 ^ block as u64);
            for (j, row) in rows.chunks_mut(d).enumerate() {
                let t = (block * 1024 + j) % topics;
                for (k, v) in row.iter_mut().enumerate() {
                    *v = centres[t * d + k] + noise * gaussian(&mut rng);
                }
            }
        });
    kmeans::normalise_rows(&mut x, d);
    x
}

fn gaussian(rng: &mut impl rand::Rng) -> f32 {
    // Box-Muller.
    let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}
