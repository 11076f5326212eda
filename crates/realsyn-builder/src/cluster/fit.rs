//! k-means as the builder's stages run it on rows they read one at a time from a
//! memory map (`cluster-text` on sentences, `balance` on images): train on a
//! sample (faiss's `max_points_per_centroid` rule, capped so one node holds it),
//! flat or two-level by K, then assign every row block by block.

use anyhow::Result;

use super::kmeans::{self, Checkpoint, KMeans, KMeansParams};
use super::search::VectorSearch;

/// Two-level k-means from this many clusters on (flat below).
pub const TWO_LEVEL_FROM: usize = 4096;
/// Rows k-means trains on at most (faiss's K x 256 rule would ask for 512M rows at
/// 2M clusters; 2^25 x 1024 x 4 bytes = 128 GiB is the most one node should hold).
pub const MAX_TRAINING_ROWS: usize = 1 << 25;
/// Rows assigned per block (and per `VectorSearch` call) in the final pass.
const ASSIGN_BLOCK: usize = 1 << 14;

/// Appends row `i` (width d) to the buffer.
pub type ReadRow<'a> = dyn Fn(usize, &mut Vec<f32>) + 'a;

/// A trained clustering and how it was trained.
pub struct Fitted {
    pub km: KMeans,
    pub training_rows: usize,
    pub two_level: bool,
}

/// Train on a sample of the `n` rows `row` reads (normalised here). Flat k-means
/// trains on at most `params.max_points_per_centroid` rows per centroid; two-level
/// on up to `MAX_TRAINING_ROWS`, since each fine clustering samples its own coarse
/// cluster's rows.
pub fn fit(
    n: usize,
    d: usize,
    params: &KMeansParams,
    two_level: bool,
    row: &ReadRow,
    search: &dyn VectorSearch,
    ckpt: &mut dyn Checkpoint,
) -> Result<Fitted> {
    let k = params.k.max(1);
    let capped = KMeansParams {
        max_points_per_centroid: params
            .max_points_per_centroid
            .min(MAX_TRAINING_ROWS / k)
            .max(1),
        ..*params
    };
    let sample = if two_level {
        kmeans::training_sample(
            n,
            &KMeansParams {
                max_points_per_centroid: (MAX_TRAINING_ROWS / k).max(1),
                ..*params
            },
        )
    } else {
        kmeans::training_sample(n, &capped)
    };
    let mut x = Vec::with_capacity(sample.len() * d);
    for &s in &sample {
        row(s, &mut x);
    }
    kmeans::normalise_rows(&mut x, d);
    let km = if two_level {
        kmeans::train_two_level(&x, d, params, search, ckpt)?
    } else {
        kmeans::train(&x, d, &capped, search, ckpt)?
    };
    Ok(Fitted {
        km,
        training_rows: sample.len(),
        two_level,
    })
}

/// The nearest centroid of each of the `n` rows `row` reads (normalised here),
/// `ASSIGN_BLOCK` rows per search; with `probe`, two-level clusterings compare each
/// row with the fine centroids of its `probe` nearest coarse clusters only.
pub fn assign_all(
    km: &KMeans,
    n: usize,
    row: &ReadRow,
    probe: Option<usize>,
    search: &dyn VectorSearch,
    label: &str,
) -> Result<Vec<u32>> {
    let d = km.d;
    let bar = realsyn_data::progress::bar(n as u64, label);
    let mut assign = Vec::with_capacity(n);
    let mut block = Vec::with_capacity(ASSIGN_BLOCK * d);
    for b in (0..n).step_by(ASSIGN_BLOCK) {
        let e = (b + ASSIGN_BLOCK).min(n);
        block.clear();
        for i in b..e {
            row(i, &mut block);
        }
        kmeans::normalise_rows(&mut block, d);
        assign.extend(km.assign(&block, probe, search)?.ids);
        bar.inc((e - b) as u64);
    }
    bar.finish_and_clear();
    Ok(assign)
}
