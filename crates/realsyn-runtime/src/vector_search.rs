//! The builder's inner-product top-m (`realsyn_builder::cluster::VectorSearch`) on a
//! Burn device: k-means assignment and the centroid ranking of retrieval as one
//! GEMM + top-m per (query block, base block) tile on the GPU, merged on the host.
//!
//! Only a tile's m best per query come back to the host (rows x m scores and ids),
//! so the transfer is small beside the GEMM. Tile sizes bound device memory:
//! `QUERY_BLOCK x BASE_BLOCK` f32 scores (2 GiB) plus the sort's buffers when m > 1.
//! Scores agree with the CPU kernel up to float rounding; equal scores may come in
//! another order (the device's sort), so a GPU store is not byte-identical to a CPU
//! one.

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use realsyn_builder::cluster::{TopM, VectorSearch};

/// Query rows per tile.
const QUERY_BLOCK: usize = 8192;
/// Base rows per tile.
const BASE_BLOCK: usize = 65_536;

/// `VectorSearch` on the device of backend `B`.
pub struct BackendSearch<B: Backend> {
    device: B::Device,
    name: String,
    blocks: (usize, usize),
}

impl<B: Backend> BackendSearch<B> {
    pub fn new(device: &B::Device, name: &str) -> Self {
        Self {
            device: device.clone(),
            name: name.to_string(),
            blocks: (QUERY_BLOCK, BASE_BLOCK),
        }
    }

    /// Smaller tiles (tests reach the block edges with little data).
    pub fn with_blocks(mut self, queries: usize, base: usize) -> Self {
        self.blocks = (queries.max(1), base.max(1));
        self
    }

    fn upload(&self, rows: &[f32], d: usize) -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(rows.to_vec(), [rows.len() / d, d]),
            &self.device,
        )
    }
}

impl<B: Backend> VectorSearch for BackendSearch<B> {
    fn top_m(&self, queries: &[f32], base: &[f32], d: usize, m: usize) -> Result<TopM> {
        anyhow::ensure!(
            d > 0 && queries.len() % d == 0 && base.len() % d == 0,
            "rows of width {d} expected"
        );
        let (nq, nb) = (queries.len() / d, base.len() / d);
        anyhow::ensure!(nb < u32::MAX as usize, "base rows are indexed by u32");
        let mut out = TopM::empty(nq, m);
        if m == 0 || nq == 0 || nb == 0 {
            return Ok(out);
        }
        let (qb, bb) = self.blocks;
        // The base, transposed once per call: [d, cols] per block.
        let blocks: Vec<(usize, usize, Tensor<B, 2>)> = (0..nb)
            .step_by(bb)
            .map(|b0| {
                let cols = bb.min(nb - b0);
                let t = self.upload(&base[b0 * d..(b0 + cols) * d], d).transpose();
                (b0, cols, t)
            })
            .collect();
        for q0 in (0..nq).step_by(qb) {
            let rows = qb.min(nq - q0);
            let q = self.upload(&queries[q0 * d..(q0 + rows) * d], d);
            for (b0, cols, bt) in &blocks {
                let tile = q.clone().matmul(bt.clone());
                let tile = tile.clone().mask_fill(tile.is_nan(), f32::NEG_INFINITY);
                let mm = m.min(*cols);
                let (scores, ids) = if mm == 1 {
                    tile.max_dim_with_indices(1)
                } else {
                    tile.topk_with_indices(mm, 1)
                };
                let scores: Vec<f32> = to_host(scores.into_data(), "top-m scores")?;
                let ids: Vec<i64> = to_host(ids.into_data(), "top-m ids")?;
                for r in 0..rows {
                    for j in 0..mm {
                        let (s, i) = (scores[r * mm + j], ids[r * mm + j] as usize);
                        out.offer(q0 + r, s, (b0 + i) as u32);
                    }
                }
            }
        }
        Ok(out)
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// A tile's values on the host, as `E`.
fn to_host<E: burn::tensor::Element>(data: TensorData, what: &str) -> Result<Vec<E>> {
    data.convert::<E>()
        .into_vec::<E>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("{what} from the device"))
}

/// Run `f` with the search `device` names: `cpu`, the builder's own CPU kernel
/// (what a build on the CPU uses); any other device (`flex`, Burn's CPU backend;
/// `cuda[:N]`), a `BackendSearch` there.
pub fn with_search<T>(device: &str, f: impl FnOnce(&dyn VectorSearch) -> Result<T>) -> Result<T> {
    if device == "cpu" {
        return f(&realsyn_builder::cluster::CpuSearch);
    }
    struct Job<F>(F, String);
    impl<T, F: FnOnce(&dyn VectorSearch) -> Result<T>> crate::device::BackendJob for Job<F> {
        type Output = T;
        fn run<B: Backend>(self, device: B::Device) -> Result<T> {
            (self.0)(&BackendSearch::<B>::new(&device, &self.1))
        }
    }
    crate::device::dispatch(device, Job(f, device.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use realsyn_builder::cluster::{CpuSearch, KMeansParams, kmeans, synthetic_topics};

    type Cpu = realsyn_model::backend::Cpu;

    #[test]
    fn matches_the_cpu_kernel_across_tile_edges() {
        let d = 24;
        let q = synthetic_topics(70, d, 9, 0.8, 2);
        let mut b = synthetic_topics(301, d, 9, 0.8, 1);
        b[5 * d] = f32::NAN; // a NaN row never enters a top-m
        let gpu = BackendSearch::<Cpu>::new(&Default::default(), "flex").with_blocks(32, 64);
        for m in [1, 3, 70] {
            let want = CpuSearch.top_m(&q, &b, d, m).unwrap();
            let got = gpu.top_m(&q, &b, d, m).unwrap();
            assert_eq!(got.ids, want.ids, "m = {m}");
            for (a, w) in got.scores.iter().zip(&want.scores) {
                assert!((a - w).abs() < 1e-5 || a == w, "{a} vs {w}");
            }
            assert!(got.ids.iter().all(|&i| i != 5), "the NaN row");
        }
        // More slots than base rows: the rest stay empty.
        let few = gpu.top_m(&q, &b[..2 * d], d, 4).unwrap();
        assert_eq!(few.ids[2..4], [u32::MAX, u32::MAX]);
    }

    #[test]
    fn kmeans_on_the_backend_equals_kmeans_on_the_cpu() {
        let d = 16;
        let x = synthetic_topics(3000, d, 30, 0.5, 4);
        let p = KMeansParams::new(30);
        let gpu = BackendSearch::<Cpu>::new(&Default::default(), "flex").with_blocks(512, 16);
        let a = kmeans::train(&x, d, &p, &CpuSearch, &mut kmeans::NoCheckpoint).unwrap();
        let b = kmeans::train(&x, d, &p, &gpu, &mut kmeans::NoCheckpoint).unwrap();
        let (oa, ob) = (a.objective.last().unwrap(), b.objective.last().unwrap());
        assert!((oa - ob).abs() < 1e-3 * oa, "{oa} vs {ob}");
        let assign = |s: &dyn VectorSearch| a.assign(&x, None, s).unwrap().ids;
        assert_eq!(assign(&gpu), assign(&CpuSearch));
    }
}
