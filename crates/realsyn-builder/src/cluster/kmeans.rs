//! Spherical k-means as faiss's `Clustering` runs it with `spherical=True`, and
//! faiss.contrib's `two_level_clustering` for large K.
//!
//! Flat (`train`), faiss's steps in faiss's order:
//! 1. more than `k * max_points_per_centroid` rows: train on a seeded random subset
//!    of that many (faiss's `subsample_training_set`);
//! 2. initial centroids: `k` distinct rows drawn at random (seeded), normalised;
//! 3. each iteration: assign every training row to its nearest centroid (GEMM +
//!    arg-max, `search::top_m`), objective = sum of the assigned cosines; centroids
//!    = mean of their rows; empty clusters are re-seeded by splitting a non-empty
//!    one, picked with probability (size - 1) / (n - k), into two copies perturbed
//!    by ±1/1024 in alternating coordinates (faiss's `split_clusters`); normalise.
//!
//! Two-level (`train_two_level`): about sqrt(K) coarse clusters (trained with up to
//! 2,000 rows per centroid, as faiss.contrib), then each coarse cluster's rows are
//! split into a number of fine clusters proportional to its size (faiss.contrib's
//! `rebalance=True`), the fine clusters together making K. Cost per iteration drops
//! from n·K·d to about n·2·sqrt(K)·d multiply-adds.
//!
//! Assignment (`KMeans::assign`): by default every row against all K centroids (the
//! nearest of all, which is what retrieval's flat centroid ranking expects); after
//! two-level training it may instead go through the coarse level: the coarse
//! centroids, then only the fine centroids of the row's `probe` nearest coarse
//! clusters (n·(1 + probe)·sqrt(K)·d instead of n·K·d multiply-adds: at the paper's
//! 0.84B sentences and 2M clusters, 6e15 instead of 1.7e18). That is approximate:
//! docs/pairing.md gives how often it finds the nearest centroid.
//!
//! Every GEMM goes through a `VectorSearch` (the CPU kernel, or a Burn device).
//!
//! Determinism: the same rows, parameters and seed give the same centroids on any
//! thread count, and a run resumed from a `Checkpoint` ends where an uninterrupted
//! one does (each iteration's randomness is seeded by the iteration number).

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::search::{TopM, VectorSearch};

/// faiss's `EPS` of `split_clusters`.
const SPLIT_EPS: f32 = 1.0 / 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KMeansParams {
    pub k: usize,
    /// Lloyd iterations (faiss: 25).
    pub iterations: usize,
    pub seed: u64,
    /// Training rows per centroid at most (faiss: 256).
    pub max_points_per_centroid: usize,
}

impl KMeansParams {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            iterations: 25,
            seed: 1234,
            max_points_per_centroid: 256,
        }
    }
}

/// A trained clustering: `k` unit centroids of width `d`, and per iteration the
/// objective (sum over training rows of the cosine to their centroid, before that
/// iteration's update) and the number of empty clusters split.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    pub d: usize,
    pub centroids: Vec<f32>,
    pub objective: Vec<f64>,
    pub splits: Vec<usize>,
    /// Two-level training's coarse level (`None` for flat k-means).
    pub coarse: Option<Coarse>,
}

/// The coarse level of a two-level clustering: its centroids, and for coarse
/// cluster c the fine centroids `fine[c]..fine[c + 1]` trained on its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Coarse {
    pub centroids: Vec<f32>,
    pub fine: Vec<usize>,
}

impl KMeans {
    pub fn k(&self) -> usize {
        self.centroids.len() / self.d
    }

    /// The nearest centroid of every row of `x` (unit rows, width `d`) and its
    /// cosine, as a top-1: among all centroids (`probe` None, or a flat
    /// clustering), or through the coarse level (the fine centroids of the `probe`
    /// nearest coarse clusters).
    pub fn assign(
        &self,
        x: &[f32],
        probe: Option<usize>,
        search: &dyn VectorSearch,
    ) -> Result<TopM> {
        let d = self.d;
        let (Some(coarse), Some(probe)) = (&self.coarse, probe) else {
            return search.top_m(x, &self.centroids, d, 1);
        };
        let nc = coarse.fine.len() - 1;
        let n = x.len() / d;
        let near = search.top_m(x, &coarse.centroids, d, probe.clamp(1, nc))?;
        // Rows grouped by probed coarse cluster, in row order within each.
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); nc];
        for r in 0..n {
            for (c, _) in near.row(r) {
                rows_of[c as usize].push(r as u32);
            }
        }
        let mut best = TopM::empty(n, 1);
        // Coarse clusters in order, so a row's equal scores keep the smaller
        // fine index whatever the probe order.
        for (c, rows) in rows_of.iter().enumerate() {
            let (a, b) = (coarse.fine[c], coarse.fine[c + 1]);
            if rows.is_empty() || a == b {
                continue;
            }
            let sub: Vec<f32> = rows
                .iter()
                .flat_map(|&r| &x[r as usize * d..(r as usize + 1) * d])
                .copied()
                .collect();
            let t = search.top_m(&sub, &self.centroids[a * d..b * d], d, 1)?;
            for (j, &r) in rows.iter().enumerate() {
                if let Some((i, s)) = t.row(j).next() {
                    best.offer(r as usize, s, (a + i as usize) as u32);
                }
            }
        }
        Ok(best)
    }
}

/// Where a long training saves its state each iteration and finds it again after a
/// kill. `name` tells the clusterings of one job apart (the coarse level, each fine
/// one).
pub trait Checkpoint {
    fn load(&mut self, name: &str) -> Result<Option<(usize, KMeans)>>;
    fn save(&mut self, name: &str, iteration: usize, state: &KMeans) -> Result<()>;
}

/// No checkpoints.
pub struct NoCheckpoint;

impl Checkpoint for NoCheckpoint {
    fn load(&mut self, _: &str) -> Result<Option<(usize, KMeans)>> {
        Ok(None)
    }
    fn save(&mut self, _: &str, _: usize, _: &KMeans) -> Result<()> {
        Ok(())
    }
}

/// The row indices faiss would train on: all `n` when `n <= k * max_points`, else a
/// seeded random subset of `k * max_points` of them, ascending.
pub fn training_sample(n: usize, p: &KMeansParams) -> Vec<usize> {
    let cap = p.k.saturating_mul(p.max_points_per_centroid);
    if n <= cap {
        return (0..n).collect();
    }
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut idx = rand::seq::index::sample(&mut rng, n, cap).into_vec();
    idx.sort_unstable();
    idx
}

/// Flat spherical k-means of the rows of `x` (width `d`).
pub fn train(
    x: &[f32],
    d: usize,
    p: &KMeansParams,
    search: &dyn VectorSearch,
    ckpt: &mut dyn Checkpoint,
) -> Result<KMeans> {
    train_named(x, d, p, search, ckpt, "flat")
}

fn train_named(
    x: &[f32],
    d: usize,
    p: &KMeansParams,
    search: &dyn VectorSearch,
    ckpt: &mut dyn Checkpoint,
    name: &str,
) -> Result<KMeans> {
    if d == 0 || x.len() % d != 0 {
        bail!("{} values are not rows of width {d}", x.len());
    }
    if let Some(bad) = x.iter().position(|v| !v.is_finite()) {
        bail!("row {} has a value that is not finite", bad / d);
    }
    let n = x.len() / d;
    if p.k == 0 {
        bail!("k-means with 0 clusters");
    }
    if n < p.k {
        bail!("{} clusters need at least as many rows; there are {n}", p.k);
    }
    let sample = training_sample(n, p);
    let owned: Vec<f32>;
    let x = if sample.len() < n {
        owned = sample
            .iter()
            .flat_map(|&i| &x[i * d..(i + 1) * d])
            .copied()
            .collect();
        &owned[..]
    } else {
        x
    };
    let n = x.len() / d;
    let (mut state, start) = match ckpt.load(name)? {
        Some((it, s)) if s.d == d && s.k() == p.k => (s, it),
        _ => {
            // Initial centroids: k distinct training rows, drawn with the seed.
            let mut rng = StdRng::seed_from_u64(p.seed.wrapping_add(1));
            let pick = rand::seq::index::sample(&mut rng, n, p.k);
            let mut centroids: Vec<f32> = pick
                .iter()
                .flat_map(|i| &x[i * d..(i + 1) * d])
                .copied()
                .collect();
            normalise_rows(&mut centroids, d);
            let s = KMeans {
                d,
                centroids,
                objective: Vec::new(),
                splits: Vec::new(),
                coarse: None,
            };
            (s, 0)
        }
    };
    for it in start..p.iterations {
        let assign = search.top_m(x, &state.centroids, d, 1)?;
        state
            .objective
            .push(assign.scores.iter().map(|&s| s as f64).sum());
        // Means, summed in row order (deterministic).
        let mut sums = vec![0f32; p.k * d];
        let mut counts = vec![0usize; p.k];
        for (r, &c) in assign.ids.iter().enumerate() {
            let c = c as usize;
            counts[c] += 1;
            for (s, v) in sums[c * d..(c + 1) * d]
                .iter_mut()
                .zip(&x[r * d..(r + 1) * d])
            {
                *s += v;
            }
        }
        for (c, &count) in counts.iter().enumerate() {
            if count > 0 {
                let inv = 1.0 / count as f32;
                sums[c * d..(c + 1) * d].iter_mut().for_each(|v| *v *= inv);
            }
        }
        let seed = p.seed.wrapping_add(1 + it as u64);
        let splits = split_empty(&mut sums, &mut counts, d, n, seed);
        normalise_rows(&mut sums, d);
        state.centroids = sums;
        state.splits.push(splits);
        ckpt.save(name, it + 1, &state)?;
    }
    Ok(state)
}

/// faiss's `split_clusters`: each empty cluster takes a copy of a cluster drawn with
/// probability (size - 1) / (n - k), both copies nudged apart; the drawn cluster's
/// count is shared between the two. Returns the number of splits.
fn split_empty(c: &mut [f32], counts: &mut [usize], d: usize, n: usize, seed: u64) -> usize {
    use rand::Rng;
    let k = counts.len();
    if !counts.contains(&0) {
        return 0;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut splits = 0;
    for ci in 0..k {
        if counts[ci] != 0 {
            continue;
        }
        let mut cj = 0;
        loop {
            let p = (counts[cj] as f32 - 1.0) / (n - k).max(1) as f32;
            if rng.random::<f32>() < p {
                break;
            }
            cj = (cj + 1) % k;
        }
        let src = c[cj * d..(cj + 1) * d].to_vec();
        c[ci * d..(ci + 1) * d].copy_from_slice(&src);
        for j in 0..d {
            let (a, b) = if j % 2 == 0 {
                (1.0 + SPLIT_EPS, 1.0 - SPLIT_EPS)
            } else {
                (1.0 - SPLIT_EPS, 1.0 + SPLIT_EPS)
            };
            c[ci * d + j] *= a;
            c[cj * d + j] *= b;
        }
        counts[ci] = counts[cj] / 2;
        counts[cj] -= counts[ci];
        splits += 1;
    }
    splits
}

pub fn normalise_rows(x: &mut [f32], d: usize) {
    for row in x.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

/// Rows of coarse clusters per centroid in two-level training (faiss.contrib).
pub const COARSE_MAX_POINTS_PER_CENTROID: usize = 2000;

/// Two-level spherical k-means: `round(sqrt(K))` coarse clusters, then each coarse
/// cluster's rows split into fine clusters in proportion to its size; the fine
/// centroids, coarse cluster by coarse cluster, are the result (`objective` and
/// `splits` are the coarse level's). A coarse cluster with fewer rows than its
/// share keeps one centroid per row, so K may come out a little smaller when the
/// rows are very uneven; the caller reads `k()`.
pub fn train_two_level(
    x: &[f32],
    d: usize,
    p: &KMeansParams,
    search: &dyn VectorSearch,
    ckpt: &mut dyn Checkpoint,
) -> Result<KMeans> {
    let n = x.len() / d.max(1);
    if n < p.k {
        bail!("{} clusters need at least as many rows; there are {n}", p.k);
    }
    let nc1 = ((p.k as f64).sqrt().round() as usize).clamp(1, p.k);
    let coarse_p = KMeansParams {
        k: nc1,
        max_points_per_centroid: COARSE_MAX_POINTS_PER_CENTROID,
        ..*p
    };
    let coarse = train_named(x, d, &coarse_p, search, ckpt, "coarse")?;
    let assign = search.top_m(x, &coarse.centroids, d, 1)?.ids;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); nc1];
    for (r, &c) in assign.iter().enumerate() {
        members[c as usize].push(r);
    }
    // Fine clusters per coarse cluster: differences of floor(cumsum * K / n).
    let mut shares = Vec::with_capacity(nc1);
    let mut cum = 0usize;
    let mut prev = 0usize;
    for m in &members {
        cum += m.len();
        let upto = cum * p.k / n;
        shares.push(upto - prev);
        prev = upto;
    }
    let mut centroids = Vec::with_capacity(p.k * d);
    let mut fine = vec![0usize];
    for (c, (rows, &share)) in members.iter().zip(&shares).enumerate() {
        let share = share.min(rows.len());
        if share == 0 {
            fine.push(centroids.len() / d);
            continue;
        }
        let sub: Vec<f32> = rows
            .iter()
            .flat_map(|&r| &x[r * d..(r + 1) * d])
            .copied()
            .collect();
        let fine_p = KMeansParams {
            k: share,
            seed: p.seed.wrapping_add(c as u64 + 1),
            ..*p
        };
        let level = train_named(&sub, d, &fine_p, search, ckpt, &format!("fine-{c:07}"))?;
        centroids.extend_from_slice(&level.centroids);
        fine.push(centroids.len() / d);
    }
    Ok(KMeans {
        d,
        centroids,
        objective: coarse.objective,
        splits: coarse.splits,
        coarse: Some(Coarse {
            centroids: coarse.centroids,
            fine,
        }),
    })
}

/// Sum over rows of the cosine to the nearest centroid (the objective faiss's
/// spherical k-means maximises), for rows `x` against trained centroids.
pub fn objective(x: &[f32], centroids: &[f32], d: usize) -> f64 {
    super::search::top_m(x, centroids, d, 1)
        .scores
        .iter()
        .map(|&s| s as f64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::search::CpuSearch;

    /// `k` well-separated unit clusters of `per` rows each in `d` dimensions.
    fn blobs(k: usize, per: usize, d: usize, seed: u64) -> Vec<f32> {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..k * d).map(|_| rng.random::<f32>() - 0.5).collect();
        let mut x = Vec::new();
        for c in 0..k {
            for _ in 0..per {
                x.extend((0..d).map(|j| centres[c * d + j] + 0.05 * (rng.random::<f32>() - 0.5)));
            }
        }
        normalise_rows(&mut x, d);
        x
    }

    #[test]
    fn finds_separated_clusters_and_is_deterministic() {
        let (k, d) = (8, 16);
        let x = blobs(k, 50, d, 7);
        let p = KMeansParams::new(k);
        let a = train(&x, d, &p, &CpuSearch, &mut NoCheckpoint).unwrap();
        let b = train(&x, d, &p, &CpuSearch, &mut NoCheckpoint).unwrap();
        assert_eq!(a, b);
        // Every blob lands in one cluster of its own: the objective is near n.
        let obj = objective(&x, &a.centroids, d);
        assert!(obj > 0.99 * 400.0, "objective {obj}");
        assert!(a.objective.windows(2).all(|w| w[1] >= w[0] - 1e-3));
    }

    #[test]
    fn empty_clusters_are_split_and_too_many_clusters_refused() {
        // 3 distinct points, 3 clusters, but 2 initial centroids may coincide: force
        // it with duplicated rows so that one cluster starts empty.
        let d = 2;
        let mut x = Vec::new();
        for _ in 0..10 {
            x.extend([1.0, 0.0]);
        }
        x.extend([0.0, 1.0, -1.0, 0.0]);
        let p = KMeansParams::new(3);
        let km = train(&x, d, &p, &CpuSearch, &mut NoCheckpoint).unwrap();
        assert_eq!(km.k(), 3);
        assert!(km.centroids.iter().all(|v| v.is_finite()));
        let err = train(&x[..4], d, &p, &CpuSearch, &mut NoCheckpoint).unwrap_err();
        assert!(err.to_string().contains("3 clusters need at least"));
        let mut bad = x.clone();
        bad[5] = f32::NAN;
        assert!(train(&bad, d, &p, &CpuSearch, &mut NoCheckpoint).is_err());
    }

    struct Memory(std::collections::HashMap<String, (usize, KMeans)>, usize);
    impl Checkpoint for Memory {
        fn load(&mut self, name: &str) -> Result<Option<(usize, KMeans)>> {
            Ok(self.0.get(name).cloned())
        }
        fn save(&mut self, name: &str, it: usize, s: &KMeans) -> Result<()> {
            self.0.insert(name.into(), (it, s.clone()));
            self.1 -= 1;
            if self.1 == 0 {
                bail!("killed");
            }
            Ok(())
        }
    }

    #[test]
    fn resumes_from_a_checkpoint_to_the_same_centroids() {
        let (k, d) = (6, 8);
        let x = blobs(k, 40, d, 3);
        let p = KMeansParams::new(k);
        let whole = train(&x, d, &p, &CpuSearch, &mut NoCheckpoint).unwrap();
        let mut ck = Memory(Default::default(), 10);
        assert!(
            train(&x, d, &p, &CpuSearch, &mut ck).is_err(),
            "killed after 10 iterations"
        );
        ck.1 = usize::MAX;
        assert_eq!(train(&x, d, &p, &CpuSearch, &mut ck).unwrap(), whole);
    }

    #[test]
    fn two_level_makes_k_clusters_close_to_flat() {
        let (k, d) = (36, 12);
        let x = blobs(k, 30, d, 11);
        let p = KMeansParams::new(k);
        let flat = train(&x, d, &p, &CpuSearch, &mut NoCheckpoint).unwrap();
        let two = train_two_level(&x, d, &p, &CpuSearch, &mut NoCheckpoint).unwrap();
        assert_eq!(two.k(), k);
        let (of, ot) = (
            objective(&x, &flat.centroids, d),
            objective(&x, &two.centroids, d),
        );
        assert!(ot > 0.97 * of, "two-level {ot} vs flat {of}");
    }

    #[test]
    fn two_level_assignment_probing_every_coarse_cluster_is_the_flat_one() {
        let (k, d) = (49, 10);
        let x = blobs(k, 20, d, 5);
        let two =
            train_two_level(&x, d, &KMeansParams::new(k), &CpuSearch, &mut NoCheckpoint).unwrap();
        let coarse = two
            .coarse
            .as_ref()
            .expect("two-level keeps its coarse level");
        assert_eq!(coarse.fine.len(), 8, "round(sqrt(49)) = 7 coarse clusters");
        assert_eq!(*coarse.fine.last().unwrap(), two.k());
        let flat = crate::cluster::top_m(&x, &two.centroids, d, 1);
        let all = two.assign(&x, Some(7), &CpuSearch).unwrap();
        assert_eq!(two.assign(&x, None, &CpuSearch).unwrap(), flat);
        assert_eq!(all.ids, flat.ids);
        assert_eq!(all.scores, flat.scores);
        // One coarse cluster per row already finds the flat answer for separated blobs.
        let one = two.assign(&x, Some(1), &CpuSearch).unwrap();
        let same = one
            .ids
            .iter()
            .zip(&flat.ids)
            .filter(|(a, b)| a == b)
            .count();
        assert!(
            same as f64 > 0.95 * flat.ids.len() as f64,
            "{same} of {}",
            flat.ids.len()
        );
    }
}
