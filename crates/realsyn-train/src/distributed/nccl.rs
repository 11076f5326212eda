//! NCCL collectives for ranks on CUDA devices: what `torch.distributed`'s `nccl`
//! backend gives DDP and open_clip. The gradient all-reduce and the feature
//! all-gather run device to device (NVLink within a node, InfiniBand or sockets
//! across nodes, whichever NCCL finds) instead of crossing the host as the TCP
//! ring's do.
//!
//! The communicator is set up once per job: rank 0 asks NCCL for a unique id and
//! the TCP ring broadcasts it (as torch's `TCPStore` does), then every rank joins
//! with `ncclCommInitRank`. NCCL is loaded at run time (`libnccl.so.2`, shipped
//! with PyTorch's CUDA wheels and NVIDIA's images); without it, or with
//! `REALSYN_COLLECTIVES=tcp`, the ring carries everything.
//!
//! Burn's tensors stay Burn's: each collective reads a tensor's device memory and
//! writes a new tensor (never an existing one, which other tensors may share).
//! The compute stream is synchronised before a collective and NCCL's own stream
//! after it, so no kernel reads or writes half a result.

use std::any::{Any, TypeId};
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use burn::backend::cuda::CudaDevice;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use cubecl_cuda::CudaRuntime;
use cudarc::driver::{result as cu, sys as cu_sys};
use cudarc::nccl::{result as nccl, sys as nccl_sys};

/// One rank's NCCL communicator on its CUDA device.
pub struct Communicator {
    comm: nccl_sys::ncclComm_t,
    /// Collectives run on their own stream, as torch's do.
    stream: cu_sys::CUstream,
    context: cu_sys::CUcontext,
    device: CudaDevice,
    world: usize,
    /// How long a collective may wait for the other ranks.
    timeout: Duration,
    /// Set once `ncclCommAbort` has freed the communicator.
    aborted: bool,
}

// The communicator and the stream are used by one thread at a time (the trainer's).
unsafe impl Send for Communicator {}

/// Whether `device` (a `B::Device`) is a CUDA device, and which.
pub fn cuda_device<B: Backend>(device: &B::Device) -> Option<CudaDevice> {
    (device as &dyn Any).downcast_ref::<CudaDevice>().cloned()
}

/// Whether `B`'s float tensors are CubeCL's CUDA tensors, whose device memory NCCL
/// reads and writes; a build with Burn's fusion (`--features fusion`) holds lazy
/// tensors instead.
pub fn holds_cuda_memory<B: Backend>() -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<CubeTensor<CudaRuntime>>()
}

/// The unique id rank 0 makes and every rank needs, as bytes for the ring.
pub fn new_unique_id() -> Result<Vec<u8>> {
    let id = nccl::get_uniqueid().map_err(|e| {
        anyhow!(
            "NCCL could not start ({e:?}): is libnccl.so.2 on LD_LIBRARY_PATH? \
             (set REALSYN_COLLECTIVES=tcp to use the TCP ring instead)"
        )
    })?;
    Ok(id.internal.iter().map(|&c| c as u8).collect())
}

impl Communicator {
    /// Join the job's communicator as `rank` of `world` on `device`, with rank 0's
    /// `unique_id` (from [`new_unique_id`]); a collective fails after `timeout`.
    pub fn join(
        unique_id: &[u8],
        (rank, world): (usize, usize),
        device: CudaDevice,
        timeout: Duration,
    ) -> Result<Self> {
        let mut id = nccl_sys::ncclUniqueId { internal: [0; 128] };
        if unique_id.len() != id.internal.len() {
            bail!(
                "rank 0 sent an NCCL id of {} bytes, not 128",
                unique_id.len()
            );
        }
        for (to, &from) in id.internal.iter_mut().zip(unique_id) {
            *to = from as _;
        }
        // The primary context is the one Burn's CUDA runtime uses, so pointers to
        // its tensors are valid here.
        let context = unsafe {
            cu::init().context("initialising the CUDA driver")?;
            let dev = cu::device::get(device.index as i32)
                .with_context(|| format!("CUDA device {}", device.index))?;
            cu::primary_ctx::retain(dev).context("the device's primary CUDA context")?
        };
        unsafe { cu::ctx::set_current(context) }.context("making the CUDA context current")?;
        let stream = cu::stream::create(cu::stream::StreamKind::NonBlocking)
            .context("creating the collectives' CUDA stream")?;
        let mut comm = MaybeUninit::uninit();
        unsafe { nccl::comm_init_rank(comm.as_mut_ptr(), world as i32, id, rank as i32) }.map_err(
            |e| {
                anyhow!(
                    "rank {rank} of {world} could not join the NCCL communicator on cuda:{}: {e:?} \
                     (every rank needs its own GPU; NCCL_DEBUG=INFO says more)",
                    device.index
                )
            },
        )?;
        Ok(Self {
            comm: unsafe { comm.assume_init() },
            stream,
            context,
            device,
            world,
            timeout,
            aborted: false,
        })
    }

    /// The element-wise sum of every rank's `mine`, on every rank.
    pub fn all_reduce_sum<B: Backend>(&mut self, mine: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let device = mine.device();
        let sum = Tensor::<B, 1>::empty(mine.shape(), &device);
        let (src, dst) = (cube(mine)?, cube(sum)?);
        let count = src.meta.shape().num_elements();
        self.run::<B>(&device, &src, &dst, |send, recv, comm, stream| unsafe {
            nccl::all_reduce(
                send,
                recv,
                count,
                nccl_sys::ncclDataType_t::ncclFloat32,
                nccl_sys::ncclRedOp_t::ncclSum,
                comm,
                stream,
            )
        })?;
        Ok(burn_tensor(dst))
    }

    /// Every rank's `mine` (all of one length), in rank order: `world` slices of the
    /// gathered tensor.
    pub fn all_gather<B: Backend>(&mut self, mine: Tensor<B, 1>) -> Result<Vec<Tensor<B, 1>>> {
        let device = mine.device();
        let n = mine.shape().num_elements();
        let all = Tensor::<B, 1>::empty([n * self.world], &device);
        let (src, dst) = (cube(mine)?, cube(all)?);
        self.run::<B>(&device, &src, &dst, |send, recv, comm, stream| unsafe {
            nccl::all_gather(
                send,
                recv,
                n,
                nccl_sys::ncclDataType_t::ncclFloat32,
                comm,
                stream,
            )
        })?;
        let all = burn_tensor::<B>(dst);
        Ok((0..self.world)
            .map(|r| all.clone().slice(r * n..(r + 1) * n))
            .collect())
    }

    /// `op(send, recv, comm, stream)` on `src`'s and `dst`'s device memory, between
    /// a synchronised compute stream and a synchronised NCCL stream.
    fn run<B: Backend>(
        &mut self,
        device: &B::Device,
        src: &CubeTensor<CudaRuntime>,
        dst: &CubeTensor<CudaRuntime>,
        op: impl FnOnce(
            *const c_void,
            *mut c_void,
            nccl_sys::ncclComm_t,
            nccl_sys::cudaStream_t,
        ) -> Result<nccl::NcclStatus, nccl::NcclError>,
    ) -> Result<()> {
        if src.device != self.device {
            bail!(
                "an NCCL collective got a tensor on cuda:{}, the communicator is on cuda:{}",
                src.device.index,
                self.device.index
            );
        }
        B::sync(device).map_err(|e| anyhow!("waiting for the GPU before a collective: {e:?}"))?;
        let resource = |t: &CubeTensor<CudaRuntime>| {
            t.client
                .get_resource(t.handle.clone())
                .map_err(|e| anyhow!("the device memory of a tensor: {e:?}"))
        };
        // Held to the end: they keep the memory from being reused meanwhile.
        let (send, recv) = (resource(src)?, resource(dst)?);
        unsafe { cu::ctx::set_current(self.context) }.context("making the CUDA context current")?;
        op(
            send.resource().ptr as *const c_void,
            recv.resource().ptr as *mut c_void,
            self.comm,
            self.stream as nccl_sys::cudaStream_t,
        )
        .map_err(|e| anyhow!("NCCL collective failed: {e:?} (NCCL_DEBUG=INFO says more)"))?;
        self.wait()
    }

    /// Wait for the collective on NCCL's stream as torch's NCCL watchdog does: a rank
    /// that died or hangs leaves it pending (within a node NCCL may never notice), so
    /// poll NCCL's asynchronous error and the clock, and abort the communicator on
    /// either rather than wait forever.
    fn wait(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            match unsafe { cu_sys::cuStreamQuery(self.stream) } {
                cu_sys::CUresult::CUDA_SUCCESS => return Ok(()),
                cu_sys::CUresult::CUDA_ERROR_NOT_READY => {}
                e => bail!("an NCCL collective failed on the GPU: {e:?}"),
            }
            let mut error = nccl_sys::ncclResult_t::ncclSuccess;
            unsafe { nccl_sys::ncclCommGetAsyncError(self.comm, &mut error) };
            let failed = !matches!(
                error,
                nccl_sys::ncclResult_t::ncclSuccess | nccl_sys::ncclResult_t::ncclInProgress
            );
            if failed || started.elapsed() > self.timeout {
                self.abort();
                let why = if failed {
                    format!("NCCL reports {error:?}: a rank stopped or the network failed")
                } else {
                    format!(
                        "no answer from the other ranks for {} s (REALSYN_DIST_TIMEOUT)",
                        self.timeout.as_secs()
                    )
                };
                bail!(
                    "{why}. Start all {} ranks again with --resume latest",
                    self.world
                );
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    fn abort(&mut self) {
        if !self.aborted {
            self.aborted = true;
            unsafe {
                let _ = nccl::comm_abort(self.comm);
            }
        }
    }
}

impl Drop for Communicator {
    fn drop(&mut self) {
        unsafe {
            if !self.aborted {
                let _ = nccl::comm_destroy(self.comm);
            }
            let _ = cu::stream::destroy(self.stream);
        }
    }
}

/// `t` as the CUDA backend's own tensor: contiguous f32, which is what every
/// collective here moves.
fn cube<B: Backend>(t: Tensor<B, 1>) -> Result<CubeTensor<CudaRuntime>> {
    let t = t.cast(burn::tensor::FloatDType::F32);
    let primitive: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    let cube = primitive
        .downcast::<CubeTensor<CudaRuntime>>()
        .map_err(|_| anyhow!("NCCL collectives take tensors of the CUDA backend"))?;
    if !cube.is_contiguous() {
        bail!("an NCCL collective got a strided tensor; make it contiguous first");
    }
    Ok(*cube)
}

/// The inverse of [`cube`].
fn burn_tensor<B: Backend>(t: CubeTensor<CudaRuntime>) -> Tensor<B, 1> {
    let primitive: Box<dyn Any> = Box::new(t);
    let primitive = primitive
        .downcast::<B::FloatTensorPrimitive>()
        .expect("a CubeTensor<CudaRuntime> is the CUDA backend's float tensor");
    Tensor::from_primitive(TensorPrimitive::Float(*primitive))
}
