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
//! Ranks on CUDA GPUs run the two per-step collectives with NCCL (`nccl`), device
//! to device, as torch's `nccl` backend does for DDP. Everything else, and every
//! collective on other backends, goes over TCP (`ring`) through host memory (what
//! burn-collective's multi-node path does too): the start-up broadcast, NCCL's id,
//! the end-of-epoch check and checkpoint positions.

pub mod launch;
#[cfg(feature = "cuda")]
pub mod nccl;
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
    /// NCCL between the ranks' GPUs, once [`ProcessGroup::use_device`] found them.
    #[cfg(feature = "cuda")]
    nccl: Option<nccl::Communicator>,
}

impl ProcessGroup {
    pub fn single() -> Self {
        Self::new(LaunchEnv::single(), None)
    }

    fn new(env: LaunchEnv, ring: Option<TcpRing>) -> Self {
        Self {
            env,
            ring,
            #[cfg(feature = "cuda")]
            nccl: None,
        }
    }

    /// Join the job described by `env`; `job` names the run (its output directory),
    /// so that ranks of different jobs never pair up.
    pub fn join(env: LaunchEnv, job: &str) -> Result<Self> {
        if env.world == 1 {
            return Ok(Self::new(env, None));
        }
        let timeout = timeout_from_env()?;
        let ring = TcpRing::join(&env, realsyn_io::hash::fnv1a(job.as_bytes()), timeout)?;
        Ok(Self::new(env, Some(ring)))
    }

    /// Carry the step's collectives (gradient all-reduce, feature all-gather) on
    /// `device` where it can: NCCL when it is a CUDA GPU and the job has several
    /// ranks. `REALSYN_COLLECTIVES` overrides: `tcp` keeps the TCP ring, `nccl`
    /// insists on NCCL (an error where it cannot start; on one rank it still runs,
    /// which checks a GPU machine's NCCL). Every rank calls this with its own device
    /// and must see the same `REALSYN_COLLECTIVES`. Returns what carries them.
    pub fn use_device<B: Backend>(&mut self, device: &B::Device) -> Result<&'static str> {
        let choice = std::env::var("REALSYN_COLLECTIVES").unwrap_or_default();
        let wanted = match choice.trim() {
            "" | "auto" => self.env.world > 1,
            "nccl" => true,
            "tcp" => false,
            other => bail!("REALSYN_COLLECTIVES={other:?}: use auto (the default), nccl or tcp"),
        };
        if wanted {
            self.start_nccl::<B>(device, choice.trim() == "nccl")?;
        }
        Ok(self.collectives())
    }

    #[cfg(feature = "cuda")]
    fn start_nccl<B: Backend>(&mut self, device: &B::Device, insist: bool) -> Result<()> {
        let Some(cuda) = nccl::cuda_device::<B>(device) else {
            if insist {
                bail!("REALSYN_COLLECTIVES=nccl needs CUDA devices (--device cuda)");
            }
            return Ok(());
        };
        if !nccl::holds_cuda_memory::<B>() {
            // The same binary on every rank: all decide alike without a word.
            let why =
                "NCCL cannot read the tensors of a build with Burn's fusion (--features fusion)";
            if insist {
                bail!("REALSYN_COLLECTIVES=nccl: {why}");
            }
            if self.is_leader() {
                eprintln!("warning: {why}; the collectives go over the TCP ring");
            }
            return Ok(());
        }
        // Rank 0 makes the id and the ring hands it on; an empty id (NCCL did not
        // load on rank 0) makes every rank take the same decision.
        let (id, why) = match self.is_leader().then(nccl::new_unique_id) {
            Some(Err(e)) => (Vec::new(), Some(e)),
            Some(Ok(id)) => (id, None),
            None => (Vec::new(), None),
        };
        let id = self.broadcast(id, "the NCCL id")?;
        if id.is_empty() {
            let why = why.map_or("rank 0 could not start NCCL".into(), |e| format!("{e:#}"));
            if insist {
                bail!("{why}");
            }
            if self.is_leader() {
                eprintln!("warning: {why}; the collectives go over the TCP ring");
            }
            return Ok(());
        }
        self.nccl = Some(nccl::Communicator::join(
            &id,
            (self.env.rank, self.env.world),
            cuda,
            timeout_from_env()?,
        )?);
        Ok(())
    }

    #[cfg(not(feature = "cuda"))]
    fn start_nccl<B: Backend>(&mut self, _: &B::Device, insist: bool) -> Result<()> {
        if insist {
            bail!("REALSYN_COLLECTIVES=nccl needs a build with --features cuda");
        }
        Ok(())
    }

    /// What carries the step's collectives: "NCCL", "TCP ring" or "none" (one rank).
    pub fn collectives(&self) -> &'static str {
        #[cfg(feature = "cuda")]
        if self.nccl.is_some() {
            return "NCCL";
        }
        if self.ring.is_some() {
            "TCP ring"
        } else {
            "none"
        }
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

    /// Sum the gradients of all ranks in place: the packed buffer when the step
    /// packed them (every rank packs alike), else every gradient in name order.
    pub fn all_reduce_grads<B: Backend>(&mut self, grads: &mut NamedGrads<B>) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(nccl) = &mut self.nccl {
            // On the GPU: one flat buffer, summed device to device; each gradient a
            // slice of the sum (a view: `flat` aligns them). Gradients the step did
            // not pack (`train.foreach = false`) are packed here, in name order.
            if grads.packed().is_none() {
                let lengths = grads.lengths();
                let layout = crate::optim::FlatLayout::in_order(
                    lengths.iter().map(|(k, n)| (k.as_str(), *n)),
                );
                grads.pack(layout);
            }
            if let Some((layout, flat)) = grads.take_packed() {
                let sum = nccl
                    .all_reduce_sum(flat)
                    .context("the gradient all-reduce")?;
                grads.set_packed(layout, sum);
            }
            return Ok(());
        }
        let Some(ring) = &mut self.ring else {
            return Ok(());
        };
        // Summed where they lie, no packing: each gradient (or the packed buffer)
        // taken by value (a tensor no one else holds hands over its memory
        // uncopied), the ring run over all of them as one buffer, the sums written
        // into their own memory. Packing into a fresh host buffer, copied out
        // through `to_data`, was 1.2-4.6 s per step for ViT-B/32's 605 MB (the ring
        // itself 0.33-0.40 s).
        let (layout, tensors): (_, Vec<(String, Tensor<B, 1>)>) = match grads.take_packed() {
            Some((layout, flat)) => (Some(layout), vec![("the packed gradients".into(), flat)]),
            None => (None, std::mem::take(grads).into_map().into_iter().collect()),
        };
        let mut taken = Vec::with_capacity(tensors.len());
        for (name, g) in tensors {
            let device = g.device();
            taken.push((name, g.into_data().convert::<f32>(), device));
        }
        let mut parts = Vec::with_capacity(taken.len());
        for (name, data, _) in &mut taken {
            parts.push(
                data.as_mut_slice::<f32>()
                    .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?,
            );
        }
        ring.all_reduce_sum_parts(&mut parts, "the gradient all-reduce")?;
        let mut sums = taken
            .into_iter()
            .map(|(name, data, device)| (name, Tensor::from_data(data, &device)));
        match layout {
            Some(layout) => {
                let (_, flat) = sums.next().expect("one buffer");
                grads.set_packed(layout, flat);
            }
            None => *grads = NamedGrads::from_map(sums.collect()),
        }
        Ok(())
    }

    /// Every rank's `mine` (one length on every rank), in rank order, on `mine`'s
    /// device: device to device under NCCL, else through the host.
    pub fn all_gather_tensor<B: Backend>(
        &mut self,
        mine: Tensor<B, 1>,
        what: &str,
    ) -> Result<Vec<Tensor<B, 1>>> {
        #[cfg(feature = "cuda")]
        if let Some(nccl) = &mut self.nccl {
            return nccl.all_gather(mine).with_context(|| what.to_string());
        }
        let device = mine.device();
        let values = mine
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{what}: {e:?}"))?;
        let all = self.all_gather_f32(&values, what)?;
        if let Some((q, theirs)) = all
            .iter()
            .enumerate()
            .find(|(_, v)| v.len() != values.len())
        {
            bail!(
                "{what}: rank {q} sent {} values, this rank {}: every rank needs the same batch, model and micro-batches",
                theirs.len(),
                values.len()
            );
        }
        Ok(all
            .into_iter()
            .map(|v| {
                let n = v.len();
                Tensor::from_data(TensorData::new(v, [n]), &device)
            })
            .collect())
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

/// How long a collective may wait for the other ranks: `REALSYN_DIST_TIMEOUT`
/// seconds, 1800 by default (PyTorch's and NCCL's).
fn timeout_from_env() -> Result<Duration> {
    match std::env::var("REALSYN_DIST_TIMEOUT") {
        Ok(s) => Ok(Duration::from_secs(s.trim().parse().with_context(
            || format!("REALSYN_DIST_TIMEOUT={s} is not a number of seconds"),
        )?)),
        Err(_) => Ok(Duration::from_secs(1800)),
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
