//! Hierarchical retrieval over an inverted file (paper §3.2, Fig. 3): per query, the
//! `probe` nearest cluster centroids (m = 1 in the paper), queries grouped by
//! cluster, then one GEMM per cluster against that cluster's vectors, top-k by
//! inner product (= cosine on unit vectors). A query whose probed clusters hold
//! fewer than k vectors takes its next-nearest clusters until they do. Each vector
//! lives in one cluster, so a query never gets the same vector twice.
//!
//! Cost per query: K·d (centroids) + |probed clusters|·d, against N·d for exact
//! search: at the paper's ~420 vectors per cluster and N = 0.84B, K = 2M, about
//! 400x fewer multiply-adds. The centroid ranking is K / 420 = 5,000 times the
//! per-cluster work at probe 1, so it alone goes through the caller's
//! `VectorSearch` (a GPU when there is one); the per-cluster GEMMs (a few hundred
//! rows each) run on the CPU threads.

use std::borrow::Cow;

use anyhow::Result;
use rayon::prelude::*;

use super::search::{VectorSearch, top_m};

/// Clusters of vectors, each stored contiguously (the `cluster-text` layout, or an
/// in-memory one for tests and benches).
pub trait InvertedLists: Sync {
    fn width(&self) -> usize;
    /// K unit centroids, row-major.
    fn centroids(&self) -> &[f32];
    fn list_len(&self, c: usize) -> usize;
    /// The vectors of cluster `c` (row-major; borrowed where they lie in memory) and
    /// their ids.
    fn list(&self, c: usize) -> (Cow<'_, [f32]>, &[i64]);
    fn k(&self) -> usize {
        self.centroids().len() / self.width()
    }
}

/// One retrieved vector: its id, its inner product with the query, its cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: i64,
    pub score: f32,
    pub cluster: u32,
}

/// What one query found: the clusters it searched (nearest first, with the cosine
/// of their centroids) and its top-k hits, best first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Found {
    pub clusters: Vec<(u32, f32)>,
    pub hits: Vec<Hit>,
}

/// Clusters ranked per query beyond `probe`, for queries whose clusters are short.
const SPARE_CLUSTERS: usize = 8;

/// Hierarchical top-k for every query row (width `lists.width()`); the centroids
/// are ranked on `engine`.
pub fn search(
    lists: &dyn InvertedLists,
    queries: &[f32],
    probe: usize,
    k: usize,
    engine: &dyn VectorSearch,
) -> Result<Vec<Found>> {
    let d = lists.width();
    let nq = queries.len() / d;
    let kc = lists.k();
    let probe = probe.clamp(1, kc.max(1));
    // 1. Clusters per query: the `probe` nearest, then more until they hold k.
    let ranked = engine.top_m(
        queries,
        lists.centroids(),
        d,
        (probe + SPARE_CLUSTERS).min(kc),
    )?;
    let mut found: Vec<Found> = (0..nq)
        .into_par_iter()
        .map(|q| {
            // (cluster, centroid cosine) searched, and the vectors they hold.
            let mut clusters: Vec<(u32, f32)> = Vec::new();
            let mut held = 0;
            for (c, s) in ranked.row(q) {
                if clusters.len() >= probe && held >= k {
                    break;
                }
                held += lists.list_len(c as usize);
                clusters.push((c, s));
            }
            if held < k && clusters.len() < kc {
                // Rare (tiny clusters): rank every centroid for this query.
                let all = top_m(&queries[q * d..(q + 1) * d], lists.centroids(), d, kc);
                for (c, s) in all.row(0).skip(clusters.len()) {
                    if held >= k {
                        break;
                    }
                    held += lists.list_len(c as usize);
                    clusters.push((c, s));
                }
            }
            Found {
                clusters,
                hits: Vec::new(),
            }
        })
        .collect();
    // 2. Queries grouped by cluster.
    let mut by_cluster: Vec<Vec<u32>> = vec![Vec::new(); kc];
    for (q, f) in found.iter().enumerate() {
        for &(c, _) in &f.clusters {
            by_cluster[c as usize].push(q as u32);
        }
    }
    // 3. One GEMM per cluster with queries; hits merged per query in cluster order.
    let per_cluster: Vec<(u32, Vec<(u32, Vec<Hit>)>)> = by_cluster
        .par_iter()
        .enumerate()
        .filter(|(_, qs)| !qs.is_empty())
        .map(|(c, qs)| {
            let (vectors, ids) = lists.list(c);
            let sub: Vec<f32> = qs
                .iter()
                .flat_map(|&q| &queries[q as usize * d..(q as usize + 1) * d])
                .copied()
                .collect();
            let t = top_m(&sub, &vectors, d, k.min(ids.len()));
            let hits = qs
                .iter()
                .enumerate()
                .map(|(j, &q)| {
                    let h = t
                        .row(j)
                        .map(|(i, score)| Hit {
                            id: ids[i as usize],
                            score,
                            cluster: c as u32,
                        })
                        .collect();
                    (q, h)
                })
                .collect();
            (c as u32, hits)
        })
        .collect();
    for (_, hits) in per_cluster {
        for (q, h) in hits {
            found[q as usize].hits.extend(h);
        }
    }
    for f in &mut found {
        f.hits
            .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        f.hits.truncate(k);
    }
    Ok(found)
}

/// Vectors grouped by cluster in memory: `InvertedLists` for tests and benches.
pub struct MemoryLists {
    pub d: usize,
    pub centroids: Vec<f32>,
    pub offsets: Vec<usize>,
    pub vectors: Vec<f32>,
    pub ids: Vec<i64>,
}

impl MemoryLists {
    /// Group `x` (ids 0..n) by the nearest of `centroids`.
    pub fn build(x: &[f32], d: usize, centroids: Vec<f32>) -> Self {
        let assign = top_m(x, &centroids, d, 1).ids;
        Self::from_assignment(x, d, centroids, &assign)
    }

    /// Group `x` (ids 0..n) by a given cluster per row.
    pub fn from_assignment(x: &[f32], d: usize, centroids: Vec<f32>, assign: &[u32]) -> Self {
        let k = centroids.len() / d;
        let mut offsets = vec![0usize; k + 1];
        for &c in assign {
            offsets[c as usize + 1] += 1;
        }
        for c in 0..k {
            offsets[c + 1] += offsets[c];
        }
        let mut next = offsets.clone();
        let mut order = vec![0usize; assign.len()];
        for (i, &c) in assign.iter().enumerate() {
            order[next[c as usize]] = i;
            next[c as usize] += 1;
        }
        let vectors = order
            .iter()
            .flat_map(|&i| &x[i * d..(i + 1) * d])
            .copied()
            .collect();
        Self {
            d,
            centroids,
            offsets,
            vectors,
            ids: order.iter().map(|&i| i as i64).collect(),
        }
    }
}

impl InvertedLists for MemoryLists {
    fn width(&self) -> usize {
        self.d
    }
    fn centroids(&self) -> &[f32] {
        &self.centroids
    }
    fn list_len(&self, c: usize) -> usize {
        self.offsets[c + 1] - self.offsets[c]
    }
    fn list(&self, c: usize) -> (Cow<'_, [f32]>, &[i64]) {
        let (a, b) = (self.offsets[c], self.offsets[c + 1]);
        (
            Cow::Borrowed(&self.vectors[a * self.d..b * self.d]),
            &self.ids[a..b],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::kmeans::{KMeansParams, NoCheckpoint, train};
    use crate::cluster::search::CpuSearch;

    /// 20 topics; rows drawn with another seed share the topic centres.
    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        crate::cluster::synthetic_topics(n, d, 20, 0.5, seed)
    }

    #[test]
    fn finds_most_of_the_exact_top_k_and_never_a_duplicate() {
        let d = 16;
        let x = data(4000, d, 1);
        let km = train(&x, d, &KMeansParams::new(10), &CpuSearch, &mut NoCheckpoint).unwrap();
        let lists = MemoryLists::build(&x, d, km.centroids);
        let q = data(200, d, 2);
        let found = search(&lists, &q, 1, 3, &CpuSearch).unwrap();
        let exact = top_m(&q, &x, d, 3);
        let mut hit = 0;
        for (j, f) in found.iter().enumerate() {
            assert_eq!(f.hits.len(), 3);
            let mut ids: Vec<i64> = f.hits.iter().map(|h| h.id).collect();
            ids.dedup();
            assert_eq!(ids.len(), 3, "no duplicate");
            let want: Vec<i64> = exact.row(j).map(|(i, _)| i as i64).collect();
            hit += ids.iter().filter(|i| want.contains(i)).count();
        }
        assert!(hit as f64 / 600.0 > 0.8, "recall {}", hit as f64 / 600.0);
        // Probing every cluster is exact search.
        let all = search(&lists, &q, 10, 3, &CpuSearch).unwrap();
        for (j, f) in all.iter().enumerate() {
            let want: Vec<i64> = exact.row(j).map(|(i, _)| i as i64).collect();
            assert_eq!(f.hits.iter().map(|h| h.id).collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn short_clusters_borrow_from_the_next_nearest() {
        // 5 vectors in 5 clusters of one each: k = 3 needs 3 clusters.
        let d = 2;
        let x = vec![1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0, 0.6, 0.8];
        let lists = MemoryLists::build(&x, d, x.clone());
        let found = search(&lists, &[1.0, 0.0], 1, 3, &CpuSearch).unwrap();
        let ids: Vec<i64> = found[0].hits.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![0, 4, 1]);
        assert_eq!(found[0].clusters.len(), 3);
        // More than the corpus holds: all of it, once.
        let found = search(&lists, &[1.0, 0.0], 1, 9, &CpuSearch).unwrap();
        assert_eq!(found[0].hits.len(), 5);
    }
}
