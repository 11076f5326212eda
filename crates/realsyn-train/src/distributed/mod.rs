//! Data parallelism across processes, as PyTorch DDP + open_clip do it.
//!
//! One process per device, started by a launcher (`launch`: torchrun or Slurm
//! variables). Each holds one persistent replica and reads its own slice of the
//! data; per step the ranks
//!
//! 1. all-gather the image and text features, so every rank computes the
//!    contrastive loss over the whole global batch (open_clip's `gather_features`
//!    with `gather_with_grad`: see `step` for how the gradient stays exact without
//!    a differentiable all-gather);
//! 2. all-reduce (sum) the gradients;
//! 3. take the same AdamW step on the same sums, so the replicas stay identical
//!    without ever copying parameters after the start-up broadcast.
//!
//! The collectives run over TCP (`ring`), on any backend: tensors cross the host.
//! That is what burn-collective's multi-node path does too; NCCL (GPU-direct) is
//! the next step for CUDA (docs/training.md, "Many GPUs").

pub mod launch;
pub mod ring;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use realsyn_model::Clip;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::walk::{Layout, ParamVisitor};

pub use launch::{LaunchEnv, Launcher};
use ring::TcpRing;

use crate::optim::NamedGrads;

/// This process's rank in the job, and the ring that joins it to the others
/// (none in a world of one).
pub struct ProcessGroup {
    pub env: LaunchEnv,
    ring: Option<TcpRing>,
}

impl ProcessGroup {
    pub fn single() -> Self {
        Self {
            env: LaunchEnv::single(),
            ring: None,
        }
    }

    /// Join the job described by `env`; `job` names the run (its output directory),
    /// so that ranks of different jobs never pair up.
    pub fn join(env: LaunchEnv, job: &str) -> Result<Self> {
        if env.world == 1 {
            return Ok(Self { env, ring: None });
        }
        let timeout =
            match std::env::var("REALSYN_DIST_TIMEOUT") {
                Ok(s) => Duration::from_secs(s.trim().parse().with_context(|| {
                    format!("REALSYN_DIST_TIMEOUT={s} is not a number of seconds")
                })?),
                Err(_) => Duration::from_secs(1800),
            };
        let ring = TcpRing::join(&env, realsyn_io::hash::fnv1a(job.as_bytes()), timeout)?;
        Ok(Self {
            env,
            ring: Some(ring),
        })
    }

    pub fn rank(&self) -> usize {
        self.env.rank
    }

    pub fn world(&self) -> usize {
        self.env.world
    }

    /// Rank 0 writes checkpoints, logs and evaluations.
    pub fn is_leader(&self) -> bool {
        self.env.rank == 0
    }

    pub fn all_reduce_sum(&mut self, data: &mut [f32], what: &str) -> Result<()> {
        match &mut self.ring {
            Some(r) => r.all_reduce_sum(data, what),
            None => Ok(()),
        }
    }

    /// Every rank's `mine`, in rank order.
    pub fn all_gather(&mut self, mine: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
        match &mut self.ring {
            Some(r) => r.all_gather(mine, what),
            None => Ok(vec![mine.to_vec()]),
        }
    }

    pub fn all_gather_f32(&mut self, mine: &[f32], what: &str) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .all_gather(&ring::to_bytes(mine), what)?
            .iter()
            .map(|b| ring::from_bytes(b))
            .collect())
    }

    /// Rank 0's `data` on every rank.
    pub fn broadcast(&mut self, data: Vec<u8>, what: &str) -> Result<Vec<u8>> {
        match &mut self.ring {
            Some(r) => r.broadcast(data, what),
            None => Ok(data),
        }
    }

    /// Sum the gradients of all ranks in place (one flat buffer, parameters in
    /// name order, so every rank packs the same layout).
    pub fn all_reduce_grads<B: Backend>(&mut self, grads: &mut NamedGrads<B>) -> Result<()> {
        if self.ring.is_none() {
            return Ok(());
        }
        let mut flat: Vec<f32> = Vec::new();
        let mut spans = Vec::with_capacity(grads.grads.len());
        for g in grads.grads.values() {
            let v = g
                .to_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            spans.push(v.len());
            flat.extend_from_slice(&v);
        }
        self.all_reduce_sum(&mut flat, "the gradient all-reduce")?;
        let mut at = 0;
        for (g, n) in grads.grads.values_mut().zip(spans) {
            let device = g.device();
            *g = Tensor::from_data(TensorData::new(flat[at..at + n].to_vec(), [n]), &device);
            at += n;
        }
        Ok(())
    }

    /// DDP's start: every replica takes rank 0's parameters.
    pub fn broadcast_parameters<B: AutodiffBackend>(&mut self, model: Clip<B>) -> Result<Clip<B>> {
        if self.ring.is_none() {
            return Ok(model);
        }
        let mut model = model;
        let mut flat = Vec::new();
        visit_params(&mut model, &mut Flatten(&mut flat))?;
        let got = self.broadcast(ring::to_bytes(&flat), "the start-up parameter broadcast")?;
        if got.len() != flat.len() * 4 {
            bail!(
                "rank 0's model has {} parameters, this rank's {}: every rank must build the same model",
                got.len() / 4,
                flat.len()
            );
        }
        let values = ring::from_bytes(&got);
        visit_params(
            &mut model,
            &mut Assign {
                values: &values,
                at: 0,
            },
        )?;
        Ok(model)
    }
}

struct Flatten<'a>(&'a mut Vec<f32>);
impl<B: AutodiffBackend> ParamVisitor<B> for Flatten<'_> {
    fn visit<const D: usize>(
        &mut self,
        key: &str,
        _: Layout,
        p: &mut Param<Tensor<B, D>>,
    ) -> Result<()> {
        let v = p.val().inner().to_data().convert::<f32>().into_vec::<f32>();
        self.0
            .extend(v.map_err(|e| anyhow::anyhow!("{key}: {e:?}"))?);
        Ok(())
    }
}

struct Assign<'a> {
    values: &'a [f32],
    at: usize,
}
impl<B: AutodiffBackend> ParamVisitor<B> for Assign<'_> {
    fn visit<const D: usize>(
        &mut self,
        _: &str,
        _: Layout,
        p: &mut Param<Tensor<B, D>>,
    ) -> Result<()> {
        let t = p.val().inner();
        let (shape, device) = (t.shape(), t.device());
        let n = shape.num_elements();
        let data = TensorData::new(self.values[self.at..self.at + n].to_vec(), shape);
        self.at += n;
        let t = Tensor::<B::InnerBackend, D>::from_data(data.convert_dtype(t.dtype()), &device);
        *p = Param::initialized(p.id, Tensor::from_inner(t));
        Ok(())
    }
}

/// Which of the run's `streams` data streams this rank reads: a contiguous block,
/// so the global batch (streams in order) is the same for every world size that
/// divides the stream count.
pub fn streams_of_rank(
    streams: usize,
    rank: usize,
    world: usize,
) -> Result<std::ops::Range<usize>> {
    if world == 0 || streams % world != 0 {
        bail!(
            "this run reads {streams} data streams, which {world} ranks cannot share evenly: \
             use a world size that divides {streams} (data.streams is fixed when a run starts and kept on resume)"
        );
    }
    let per = streams / world;
    Ok(rank * per..(rank + 1) * per)
}

#[cfg(test)]
mod tests {
    use super::streams_of_rank;

    #[test]
    fn streams_split_in_blocks() {
        assert_eq!(streams_of_rank(4, 0, 1).unwrap(), 0..4);
        assert_eq!(streams_of_rank(4, 1, 2).unwrap(), 2..4);
        assert_eq!(streams_of_rank(4, 3, 4).unwrap(), 3..4);
        let e = streams_of_rank(4, 0, 3).unwrap_err().to_string();
        assert!(e.contains("4 data streams"), "{e}");
    }
}
