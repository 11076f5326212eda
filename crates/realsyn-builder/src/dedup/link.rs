//! Near-duplicate linking: pairs of items closer than a threshold are linked, the
//! connected components found with union-find, and one item kept per component.
//!
//! Neighbour search is never all-pairs. For 64-bit perceptual hashes within Hamming
//! distance t, the hash is cut into t+1 bands: two hashes that close agree exactly
//! on at least one band (pigeonhole), so bucketing by each band finds every pair
//! (recall 1 by construction, checked against brute force in the tests and bench).

/// Perceptual-hash Hamming distance that links two images by default.
pub const DEFAULT_MAX_HAMMING: u32 = 4;

use std::collections::HashMap;

use anyhow::Result;

use crate::cluster::search::VectorSearch;

/// Union-find with path halving and union by size.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    /// Link `a` and `b`; true when they were in different components.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return false;
        }
        if self.size[a as usize] < self.size[b as usize] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b as usize] = a;
        self.size[a as usize] += self.size[b as usize];
        true
    }

    /// Component id (its root) of every item.
    pub fn components(&mut self) -> Vec<u32> {
        (0..self.parent.len() as u32)
            .map(|i| self.find(i))
            .collect()
    }
}

/// Link every pair of `hashes` within Hamming distance `max_dist` (band blocking).
/// Returns the number of linking unions made.
pub fn link_hamming(hashes: &[u64], max_dist: u32, uf: &mut UnionFind) -> usize {
    let mut unions = 0;
    // Identical hashes first: one representative per distinct hash goes to the bands.
    let mut first: HashMap<u64, u32> = HashMap::with_capacity(hashes.len());
    for (i, &h) in hashes.iter().enumerate() {
        match first.entry(h) {
            std::collections::hash_map::Entry::Occupied(e) => {
                unions += uf.union(*e.get(), i as u32) as usize
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i as u32);
            }
        }
    }
    let mut distinct: Vec<(u64, u32)> = first.into_iter().collect();
    distinct.sort_unstable();
    let bands = (max_dist + 1) as usize;
    let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(distinct.len());
    for b in 0..bands {
        let (lo, hi) = (64 * b / bands, 64 * (b + 1) / bands);
        let mask = if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        keyed.clear();
        keyed.extend(distinct.iter().map(|&(h, i)| (h & mask, i)));
        keyed.sort_unstable();
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            for x in 0..group.len() {
                for y in x + 1..group.len() {
                    let (i, j) = (group[x].1, group[y].1);
                    if (hashes[i as usize] ^ hashes[j as usize]).count_ones() <= max_dist {
                        unions += uf.union(i, j) as usize;
                    }
                }
            }
        }
    }
    unions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsh_links_near_duplicates_and_nothing_else() {
        let (n, dim) = (20_000, 64);
        let emb = synthetic_embeddings(n, dim, 0.1, 0.97, 3);
        let mut uf = UnionFind::new(n);
        let stats = link_cosine(&emb, dim, 0.95, &LshParams::default(), &mut uf);
        let queries: Vec<usize> = (0..n).step_by(50).chain(18_000..18_100).collect();
        let (recall, pairs) = cosine_recall(&emb, dim, 0.95, &queries, &mut uf);
        assert!(pairs >= 100, "{pairs}");
        assert!(recall >= 0.95, "recall {recall}");
        // Random 64-d unit vectors are never within cosine 0.95: links are the planted ones.
        assert!(stats.links <= 2_000 && stats.links >= 1_800, "{stats:?}");
        assert!(stats.candidates < 200_000, "LSH is not blocking: {stats:?}");
    }

    /// `n` rows: 90% drawn around 12 topics (clustered, as real embeddings are),
    /// then 10% near copies of them at cosine about 0.97.
    fn topics_with_duplicates(n: usize, dim: usize) -> Vec<f32> {
        let originals = n * 9 / 10;
        let mut emb = crate::cluster::synthetic_topics(originals, dim, 12, 0.7, 5);
        let noise = synthetic_embeddings(n - originals, dim, 0.0, 0.97, 9);
        // Noise of norm s on a unit vector gives cosine 1/sqrt(1+s^2).
        let s = (1.0 / (0.97f32 * 0.97) - 1.0).sqrt();
        for j in 0..n - originals {
            let src = (j * 7919) % originals;
            let row: Vec<f32> = (0..dim)
                .map(|k| emb[src * dim + k] + s * noise[j * dim + k])
                .collect();
            emb.extend(row);
        }
        crate::cluster::kmeans::normalise_rows(&mut emb, dim);
        emb
    }

    #[test]
    fn clusters_find_the_planted_pairs_and_never_a_pair_below() {
        let (n, dim) = (6_000, 32);
        let emb = topics_with_duplicates(n, dim);
        let how = CosinePairs::Clusters {
            clusters: 12,
            search: &crate::cluster::CpuSearch,
        };
        let mut sem = UnionFind::new(n);
        let stats = link_semantic(&emb, dim, 0.95, how, &mut sem).unwrap();
        let queries: Vec<usize> = (0..n).step_by(10).collect();
        let (recall, pairs) = cosine_recall(&emb, dim, 0.95, &queries, &mut sem);
        assert!(pairs >= 60, "{pairs}");
        assert!(recall >= 0.97, "recall {recall}");
        // Only pairs at the threshold are linked: at most the planted copies merge.
        assert!(stats.links <= (n / 10) as u64 + 5, "{stats:?}");
        // All pairs within clusters: about n²/2/12 computed, not n²/2.
        assert!(stats.candidates < (n * n / 2 / 6) as u64, "{stats:?}");
        // Random directions have no cluster structure, the worst case for partitions:
        // a pair split by a cluster border is missed (0.9 measured).
        let flat = synthetic_embeddings(n, dim, 0.1, 0.97, 5);
        let mut uf = UnionFind::new(n);
        link_semantic(&flat, dim, 0.95, how, &mut uf).unwrap();
        let (recall, _) = cosine_recall(&flat, dim, 0.95, &queries, &mut uf);
        assert!(recall >= 0.8, "recall {recall} on structureless rows");
    }

    #[test]
    fn banding_finds_every_pair_brute_force_does() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut hashes: Vec<u64> = (0..400).map(|_| rng.random()).collect();
        // Plant near duplicates at distances 0..=6.
        for k in 0..200 {
            let mut h = hashes[k];
            for _ in 0..(k % 7) {
                h ^= 1 << rng.random_range(0..64);
            }
            hashes.push(h);
        }
        for t in [0, 3, 5] {
            let mut banded = UnionFind::new(hashes.len());
            link_hamming(&hashes, t, &mut banded);
            let mut brute = UnionFind::new(hashes.len());
            for i in 0..hashes.len() {
                for j in i + 1..hashes.len() {
                    if (hashes[i] ^ hashes[j]).count_ones() <= t {
                        brute.union(i as u32, j as u32);
                    }
                }
            }
            let (a, b) = (banded.components(), brute.components());
            for i in 0..hashes.len() {
                for j in i + 1..hashes.len() {
                    assert_eq!(a[i] == a[j], b[i] == b[j], "t={t}: {i} {j}");
                }
            }
        }
    }
}

/// Random-hyperplane LSH settings for cosine linking: `tables` hash tables, each
/// keyed by `bits` sign bits of random projections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LshParams {
    pub tables: usize,
    pub bits: usize,
    pub seed: u64,
}

impl Default for LshParams {
    /// Two vectors at cosine 0.95 share a 20-bit key with p = 0.9^20 = 0.12 per
    /// table; 32 tables find them with p = 0.98, while random pairs meet in a bucket
    /// with p = 2^-20 per table.
    fn default() -> Self {
        Self {
            tables: 32,
            bits: 20,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CosineLinkStats {
    /// Pairs whose cosine was computed (shared an LSH bucket).
    pub candidates: u64,
    /// Pairs at or above the threshold, linked.
    pub links: u64,
}

/// Link every pair of L2-normalised rows of `emb` (`[n, dim]`) whose cosine is at
/// least `threshold` and that share a bucket in one of the LSH tables. Candidates are
/// verified exactly, so no pair below the threshold is ever linked; a pair above it
/// is missed with the probability given in `LshParams::default`.
pub fn link_cosine(
    emb: &[f32],
    dim: usize,
    threshold: f32,
    params: &LshParams,
    uf: &mut UnionFind,
) -> CosineLinkStats {
    use rayon::prelude::*;
    let n = emb.len() / dim.max(1);
    let sigs = signatures(emb, dim, params);
    let t = params.tables;
    let dot = |i: usize, j: usize| -> f32 {
        emb[i * dim..(i + 1) * dim]
            .iter()
            .zip(&emb[j * dim..(j + 1) * dim])
            .map(|(a, b)| a * b)
            .sum()
    };
    let per_table: Vec<(u64, Vec<(u32, u32)>)> = (0..t)
        .into_par_iter()
        .map(|table| {
            let mut keyed: Vec<(u32, u32)> =
                (0..n).map(|i| (sigs[i * t + table], i as u32)).collect();
            keyed.sort_unstable();
            let (mut candidates, mut links) = (0u64, Vec::new());
            for group in keyed.chunk_by(|a, b| a.0 == b.0) {
                for x in 0..group.len() {
                    for y in x + 1..group.len() {
                        candidates += 1;
                        let (i, j) = (group[x].1, group[y].1);
                        if dot(i as usize, j as usize) >= threshold {
                            links.push((i, j));
                        }
                    }
                }
            }
            (candidates, links)
        })
        .collect();
    union_verified(per_table, uf)
}

/// Union the verified pairs of each group (an LSH table, a partition) in group
/// order; groups carry the number of candidate pairs they compared.
fn union_verified(groups: Vec<(u64, Vec<(u32, u32)>)>, uf: &mut UnionFind) -> CosineLinkStats {
    let mut stats = CosineLinkStats::default();
    for (candidates, pairs) in groups {
        stats.candidates += candidates;
        for (i, j) in pairs {
            stats.links += uf.union(i, j) as u64;
        }
    }
    stats
}

/// How semantic dedup finds the pairs at or above its cosine threshold.
#[derive(Clone, Copy)]
pub enum CosinePairs<'a> {
    /// Random-hyperplane LSH over the whole corpus, candidates verified exactly
    /// (`link_cosine`): one job, all rows in memory.
    Lsh(LshParams),
    /// SemDeDup (Abbas et al., 2023): spherical k-means into `clusters` partitions,
    /// then every pair within each partition by GEMM, partitions in parallel. Pairs
    /// split across partitions are missed; the rest are found exactly.
    Clusters {
        clusters: usize,
        search: &'a dyn VectorSearch,
    },
}

impl CosinePairs<'_> {
    /// `Clusters` when a partition count is given, else LSH.
    pub fn from_partitions(
        partitions: Option<usize>,
        search: &dyn VectorSearch,
    ) -> CosinePairs<'_> {
        match partitions {
            Some(clusters) => CosinePairs::Clusters { clusters, search },
            None => CosinePairs::Lsh(LshParams::default()),
        }
    }
}

/// Link the pairs of rows of `emb` (`[n, dim]`, L2-normalised) at cosine
/// `threshold` or more that `how` finds.
pub fn link_semantic(
    emb: &[f32],
    dim: usize,
    threshold: f32,
    how: CosinePairs,
    uf: &mut UnionFind,
) -> Result<CosineLinkStats> {
    match how {
        CosinePairs::Lsh(p) => Ok(link_cosine(emb, dim, threshold, &p, uf)),
        CosinePairs::Clusters { clusters, search } => {
            link_cosine_in_clusters(emb, dim, threshold, clusters, search, uf)
        }
    }
}

/// SemDeDup's linking: k-means (as the pairing stages run it: flat, or two-level
/// from `TWO_LEVEL_FROM` clusters) over the finite rows, then all pairs within each
/// cluster. Memory beyond the rows: one cluster id per row and each cluster's
/// score tile (QUERY_BLOCK x its size).
pub fn link_cosine_in_clusters(
    emb: &[f32],
    dim: usize,
    threshold: f32,
    clusters: usize,
    search: &dyn VectorSearch,
    uf: &mut UnionFind,
) -> Result<CosineLinkStats> {
    use crate::cluster::fit::{TWO_LEVEL_FROM, assign_all, fit};
    use crate::cluster::kmeans::{KMeansParams, NoCheckpoint};
    use rayon::prelude::*;
    let n = emb.len() / dim.max(1);
    let rows: Vec<usize> = (0..n)
        .filter(|&i| crate::cluster::usable_row(&emb[i * dim..(i + 1) * dim]))
        .collect();
    if rows.len() < 2 {
        return Ok(CosineLinkStats::default());
    }
    let k = clusters.clamp(1, rows.len());
    let read = |i: usize, out: &mut Vec<f32>| {
        out.extend_from_slice(&emb[rows[i] * dim..(rows[i] + 1) * dim])
    };
    let fitted = fit(
        rows.len(),
        dim,
        &KMeansParams::new(k),
        k >= TWO_LEVEL_FROM,
        &read,
        search,
        &mut NoCheckpoint,
    )?;
    let assign = assign_all(&fitted.km, rows.len(), &read, None, search, "partition")?;
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); fitted.km.k()];
    for (j, &c) in assign.iter().enumerate() {
        if let Some(m) = members.get_mut(c as usize) {
            m.push(rows[j] as u32);
        }
    }
    let per_cluster: Vec<(u64, Vec<(u32, u32)>)> = members
        .par_iter()
        .map(|ids| {
            let sub: Vec<f32> = ids
                .iter()
                .flat_map(|&i| &emb[i as usize * dim..(i as usize + 1) * dim])
                .copied()
                .collect();
            let s = ids.len() as u64;
            let pairs = crate::cluster::search::pairs_above(&sub, dim, threshold)
                .into_iter()
                .map(|(a, b)| (ids[a as usize], ids[b as usize]))
                .collect();
            (s * s.saturating_sub(1) / 2, pairs)
        })
        .collect();
    Ok(union_verified(per_cluster, uf))
}

/// `[n, tables]` LSH keys: for each table, `bits` signs of projections onto Gaussian
/// directions (one GEMM per block of rows).
fn signatures(emb: &[f32], dim: usize, p: &LshParams) -> Vec<u32> {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;
    assert!(p.bits <= 32, "at most 32 bits per LSH key");
    let cols = p.tables * p.bits;
    let mut rng = rand::rngs::StdRng::seed_from_u64(p.seed);
    // Box-Muller normals, [dim, cols] row-major.
    let planes: Vec<f32> = (0..dim * cols)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    let n = emb.len() / dim.max(1);
    let block = 1024;
    let mut sigs = vec![0u32; n * p.tables];
    sigs.par_chunks_mut(block * p.tables)
        .enumerate()
        .for_each(|(b, out)| {
            let rows = out.len() / p.tables;
            let a = &emb[b * block * dim..(b * block + rows) * dim];
            let mut proj = vec![0f32; rows * cols];
            // SAFETY: the slices hold rows x dim, dim x cols and rows x cols floats,
            // row-major, as the strides say.
            unsafe {
                matrixmultiply::sgemm(
                    rows,
                    dim,
                    cols,
                    1.0,
                    a.as_ptr(),
                    dim as isize,
                    1,
                    planes.as_ptr(),
                    cols as isize,
                    1,
                    0.0,
                    proj.as_mut_ptr(),
                    cols as isize,
                    1,
                );
            }
            for r in 0..rows {
                for table in 0..p.tables {
                    let s = &proj[r * cols + table * p.bits..r * cols + (table + 1) * p.bits];
                    out[r * p.tables + table] =
                        s.iter().fold(0u32, |k, &v| (k << 1) | (v > 0.0) as u32);
                }
            }
        });
    sigs
}

/// Synthetic embeddings for tests and the benchmark: `n` unit vectors, of which
/// `dup_fraction` are noisy copies of others at cosine about `dup_cosine`.
pub fn synthetic_embeddings(
    n: usize,
    dim: usize,
    dup_fraction: f64,
    dup_cosine: f32,
    seed: u64,
) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut normal = move || {
        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    let mut emb = vec![0f32; n * dim];
    let originals = ((1.0 - dup_fraction) * n as f64) as usize;
    // Noise of norm s on a unit vector gives cosine 1/sqrt(1+s^2).
    let s = (1.0 / (dup_cosine * dup_cosine) - 1.0).sqrt();
    for i in 0..n {
        let row: Vec<f32> = if i < originals {
            (0..dim).map(|_| normal()).collect()
        } else {
            let src = (i * 7919) % originals.max(1);
            let noise: Vec<f32> = (0..dim).map(|_| normal()).collect();
            let nn = noise.iter().map(|x| x * x).sum::<f32>().sqrt();
            (0..dim)
                .map(|k| emb[src * dim + k] + s * noise[k] / nn)
                .collect()
        };
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        for k in 0..dim {
            emb[i * dim + k] = row[k] / norm;
        }
    }
    emb
}

/// Share of the exact pairs (cosine >= threshold) of `queries` rows that ended in the
/// same component, computed by brute force over all rows. Returns (recall, pairs).
pub fn cosine_recall(
    emb: &[f32],
    dim: usize,
    threshold: f32,
    queries: &[usize],
    uf: &mut UnionFind,
) -> (f64, u64) {
    use rayon::prelude::*;
    let n = emb.len() / dim;
    let pairs: Vec<(usize, usize)> = queries
        .par_iter()
        .flat_map_iter(|&q| {
            let qv = &emb[q * dim..(q + 1) * dim];
            (0..n)
                .filter(move |&j| {
                    j != q
                        && qv
                            .iter()
                            .zip(&emb[j * dim..(j + 1) * dim])
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            >= threshold
                })
                .map(move |j| (q, j))
        })
        .collect();
    let found = pairs
        .iter()
        .filter(|&&(i, j)| uf.find(i as u32) == uf.find(j as u32))
        .count();
    (found as f64 / pairs.len().max(1) as f64, pairs.len() as u64)
}
