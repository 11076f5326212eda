//! Exact inner-product top-m: every query row against every base row, as one GEMM
//! per (query block, base block) pair (`matrixmultiply`'s sgemm, the cache-blocked
//! kernel) and a running top-m per query. Query blocks run in parallel (rayon); the
//! result does not depend on the thread count (each query's scan order is fixed).
//!
//! On unit vectors the inner product is the cosine, and the nearest centroid by
//! inner product is the nearest by L2 distance (what faiss's `IndexFlatL2` finds
//! for `spherical=True` k-means).
//!
//! `VectorSearch` says where the large GEMMs run (k-means assignment, the final
//! assignment of every row, ranking the centroids per image): `CpuSearch` is this
//! file's kernel; realsyn-runtime's `BackendSearch` runs the same top-m on a Burn
//! device (CUDA), so the builder itself stays free of any tensor backend.

use anyhow::Result;
use rayon::prelude::*;

/// Where inner-product top-m runs. Implementations return what `top_m` returns
/// (best first; ties keep the smaller index on the CPU, in the device's order
/// elsewhere; NaN never enters), up to float rounding of the scores.
pub trait VectorSearch: Sync {
    fn top_m(&self, queries: &[f32], base: &[f32], d: usize, m: usize) -> Result<TopM>;
    /// For logs and summaries: `cpu` or the device.
    fn name(&self) -> String;
}

/// `top_m` on the CPU threads (rayon), deterministic on any thread count.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSearch;

impl VectorSearch for CpuSearch {
    fn top_m(&self, queries: &[f32], base: &[f32], d: usize, m: usize) -> Result<TopM> {
        Ok(top_m(queries, base, d, m))
    }
    fn name(&self) -> String {
        "cpu".into()
    }
}

/// Query rows per block (and per rayon task).
const QUERY_BLOCK: usize = 256;
/// Base rows per GEMM: the score tile is QUERY_BLOCK x BASE_BLOCK f32 (4 MB).
const BASE_BLOCK: usize = 4096;

/// The m best base rows of each query, best first; ties keep the smaller index.
/// Slots beyond the base's size hold `id = u32::MAX`, `score = f32::NEG_INFINITY`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopM {
    pub m: usize,
    pub scores: Vec<f32>,
    pub ids: Vec<u32>,
}

impl TopM {
    /// `queries` rows of `m` empty slots.
    pub fn empty(queries: usize, m: usize) -> Self {
        Self {
            m,
            scores: vec![f32::NEG_INFINITY; queries * m],
            ids: vec![u32::MAX; queries * m],
        }
    }

    /// Offer (score, base id) to query `q`'s list: it enters when strictly better
    /// than the last slot (so NaN never does, and among equal scores the one
    /// offered first stays).
    pub fn offer(&mut self, q: usize, score: f32, id: u32) {
        let m = self.m;
        let r = q * m..(q + 1) * m;
        if m > 0 && score > self.scores[r.end - 1] {
            insert(&mut self.scores[r.clone()], &mut self.ids[r], score, id);
        }
    }

    pub fn queries(&self) -> usize {
        self.ids.len().checked_div(self.m).unwrap_or(0)
    }

    /// Query `q`'s (id, score) pairs, best first, without the empty slots.
    pub fn row(&self, q: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let r = q * self.m..(q + 1) * self.m;
        self.ids[r.clone()]
            .iter()
            .zip(&self.scores[r])
            .filter(|(id, _)| **id != u32::MAX)
            .map(|(&i, &s)| (i, s))
    }
}

/// The `m` base rows with the largest inner product for each query row. `queries`
/// and `base` are row-major with `d` columns. NaN scores never enter a top-m.
pub fn top_m(queries: &[f32], base: &[f32], d: usize, m: usize) -> TopM {
    assert!(d > 0 && queries.len() % d == 0 && base.len() % d == 0);
    let (nq, nb) = (queries.len() / d, base.len() / d);
    assert!(nb < u32::MAX as usize, "base rows are indexed by u32");
    let mut out = TopM::empty(nq, m);
    if m == 0 || nq == 0 {
        return out;
    }
    queries
        .par_chunks(QUERY_BLOCK * d)
        .zip(out.scores.par_chunks_mut(QUERY_BLOCK * m))
        .zip(out.ids.par_chunks_mut(QUERY_BLOCK * m))
        .for_each(|((q, s), i)| block_top_m(q, base, d, m, nb, s, i));
    out
}

/// `tile[r, c] = <a_r, b_c>` for the `rows` rows of `a` and the `cols` rows of `b`
/// (both row-major, width `d`): one sgemm with B read transposed.
fn dot_tile(a: &[f32], rows: usize, b: &[f32], cols: usize, d: usize, tile: &mut [f32]) {
    assert!(a.len() >= rows * d && b.len() >= cols * d && tile.len() >= rows * cols);
    // SAFETY: the asserts above: a holds rows x d, b cols x d (read as d x cols
    // through its strides) and tile rows x cols floats, row-major.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            d,
            cols,
            1.0,
            a.as_ptr(),
            d as isize,
            1,
            b.as_ptr(),
            1,
            d as isize,
            0.0,
            tile.as_mut_ptr(),
            cols as isize,
            1,
        );
    }
}

fn block_top_m(
    q: &[f32],
    base: &[f32],
    d: usize,
    m: usize,
    nb: usize,
    scores: &mut [f32],
    ids: &mut [u32],
) {
    let rows = q.len() / d;
    let mut tile = vec![0f32; rows * BASE_BLOCK.min(nb)];
    for b0 in (0..nb).step_by(BASE_BLOCK) {
        let cols = BASE_BLOCK.min(nb - b0);
        dot_tile(q, rows, &base[b0 * d..], cols, d, &mut tile);
        for r in 0..rows {
            let (s, i) = (
                &mut scores[r * m..(r + 1) * m],
                &mut ids[r * m..(r + 1) * m],
            );
            for (c, &v) in tile[r * cols..(r + 1) * cols].iter().enumerate() {
                // Only a strictly better score enters (NaN never does), so among
                // equal scores the first base row seen (the smaller index) stays.
                if v > s[m - 1] {
                    insert(s, i, v, (b0 + c) as u32);
                }
            }
        }
    }
}

/// Every pair (i, j), i < j, of rows of `x` (width `d`) whose inner product is at
/// least `threshold`: one GEMM per block of `QUERY_BLOCK` rows against the rows
/// after it (faiss's range search within one set). Pairs come in (i, j) order;
/// cost n²·d/2 multiply-adds, for the clusters of semantic dedup.
pub fn pairs_above(x: &[f32], d: usize, threshold: f32) -> Vec<(u32, u32)> {
    assert!(d > 0 && x.len() % d == 0);
    let n = x.len() / d;
    let blocks: Vec<usize> = (0..n).step_by(QUERY_BLOCK).collect();
    let per_block: Vec<Vec<(u32, u32)>> = blocks
        .par_iter()
        .map(|&r0| {
            let rows = QUERY_BLOCK.min(n - r0);
            // Columns from r0 on: the pairs within the block and after it.
            let cols = n - r0;
            let mut tile = vec![0f32; rows * cols];
            dot_tile(&x[r0 * d..], rows, &x[r0 * d..], cols, d, &mut tile);
            let mut out = Vec::new();
            for r in 0..rows {
                for c in r + 1..cols {
                    if tile[r * cols + c] >= threshold {
                        out.push(((r0 + r) as u32, (r0 + c) as u32));
                    }
                }
            }
            out
        })
        .collect();
    per_block.concat()
}

/// Insert (v, id) into the descending list `s`/`i`, dropping its last entry; after
/// entries of equal score.
fn insert(s: &mut [f32], i: &mut [u32], v: f32, id: u32) {
    let mut k = s.len() - 1;
    while k > 0 && s[k - 1] < v {
        s[k] = s[k - 1];
        i[k] = i[k - 1];
        k -= 1;
    }
    s[k] = v;
    i[k] = id;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_naive_scan_across_block_edges() {
        let d = 5;
        let (nq, nb) = (QUERY_BLOCK + 7, BASE_BLOCK + 33);
        let val = |k: usize| ((k * 7919 % 1009) as f32 / 1009.0) - 0.5;
        let q: Vec<f32> = (0..nq * d).map(val).collect();
        let b: Vec<f32> = (0..nb * d).map(|k| val(k + 17)).collect();
        let got = top_m(&q, &b, d, 3);
        for r in [0, 1, QUERY_BLOCK, nq - 1] {
            let mut all: Vec<(f32, u32)> = (0..nb)
                .map(|j| {
                    let s: f32 = (0..d).map(|k| q[r * d + k] * b[j * d + k]).sum();
                    (s, j as u32)
                })
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let want: Vec<u32> = all[..3].iter().map(|x| x.1).collect();
            let have: Vec<u32> = got.row(r).map(|x| x.0).collect();
            assert_eq!(have, want, "query {r}");
            for ((_, s), (w, _)) in got.row(r).zip(&all[..3]) {
                assert!((s - w).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn pairs_above_is_the_naive_double_loop() {
        let d = 3;
        let n = QUERY_BLOCK + 40;
        let val = |k: usize| ((k * 7919 % 1009) as f32 / 1009.0) - 0.5;
        let x: Vec<f32> = (0..n * d).map(val).collect();
        let t = 0.3;
        let mut want = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                let s: f32 = (0..d).map(|k| x[i * d + k] * x[j * d + k]).sum();
                // Skip pairs within rounding of the threshold.
                if (s - t).abs() < 1e-5 {
                    continue;
                }
                if s >= t {
                    want.push((i as u32, j as u32));
                }
            }
        }
        let got: Vec<(u32, u32)> = pairs_above(&x, d, t)
            .into_iter()
            .filter(|&(i, j)| {
                let s: f32 = (0..d)
                    .map(|k| x[i as usize * d + k] * x[j as usize * d + k])
                    .sum();
                (s - t).abs() >= 1e-5
            })
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want);
    }

    #[test]
    fn short_base_leaves_empty_slots_and_ties_keep_the_first() {
        let q = [1.0, 0.0];
        let b = [0.5, 0.0, 0.5, 1.0, f32::NAN, 0.0];
        let t = top_m(&q, &b, 2, 4);
        assert_eq!(t.row(0).map(|x| x.0).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(t.ids[2..], [u32::MAX, u32::MAX]);
    }
}
