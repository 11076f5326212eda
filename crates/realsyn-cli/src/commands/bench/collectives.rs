//! The gradient all-reduce alone, as the trainer runs it between ranks: one
//! gradient of `--elements` f32 values per rank, summed across the ranks that the
//! launcher variables describe (TCP ring on CPU, NCCL on CUDA GPUs). The peer is
//! `benches/all_reduce.py` (`torch.distributed.all_reduce`, gloo on CPU, nccl on
//! GPUs), started the same way by `benches/all_reduce.sh`.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Result, ensure};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use realsyn_runtime::{BackendJob, dispatch};
use realsyn_train::distributed::{LaunchEnv, ProcessGroup};
use realsyn_train::optim::NamedGrads;

#[derive(clap::Args, Clone)]
pub struct AllReduce {
    /// Values per rank (f32); the default is ViT-B/32's parameter count.
    #[arg(long, default_value_t = 151_277_313)]
    elements: usize,
    /// cpu (flex), cuda[:N] (--features cuda; `cuda` becomes cuda:LOCAL_RANK).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Untimed all-reduces first (connections, NCCL's buffers).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed all-reduces (the median is reported).
    #[arg(long, default_value_t = 5)]
    iters: usize,
}

struct Timed {
    seconds: Vec<f64>,
    world: usize,
    leader: bool,
    collectives: &'static str,
}

pub fn run(a: &AllReduce) -> Result<()> {
    let env = LaunchEnv::from_env()?;
    let device = env.device_for_rank(&a.device);
    let t = dispatch(&device, Job(a.clone(), env))?;
    if !t.leader {
        return Ok(());
    }
    let median = super::median(t.seconds.clone());
    let bytes = 4.0 * a.elements as f64;
    // nccl-tests' convention: the bus bandwidth is what each link carries.
    let algbw = bytes / median / 1e9;
    let busbw = algbw * 2.0 * (t.world as f64 - 1.0) / t.world as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "all-reduce", "backend": a.device,
            "collectives": t.collectives, "world": t.world, "elements": a.elements,
            "seconds": t.seconds, "median_s": median, "algbw_gbs": algbw, "busbw_gbs": busbw,
        })
    );
    Ok(())
}

/// The bench as one rank of the job `LaunchEnv` describes.
struct Job(AllReduce, LaunchEnv);

impl BackendJob for Job {
    type Output = Timed;

    fn run<B: Backend>(self, device: B::Device) -> Result<Timed> {
        let Job(a, env) = self;
        let rank = env.rank;
        let mut group = ProcessGroup::join(env, "realsyn bench all-reduce")?;
        let collectives = group.use_device::<B>(&device)?;
        let world = group.world();
        // Rank r sends r + 1 everywhere: every element of the sum is W(W + 1) / 2.
        let expected = (world * (world + 1) / 2) as f32;
        let mut seconds = Vec::with_capacity(a.iters);
        for i in 0..a.warmup + a.iters {
            // A new gradient each time, held by no one else, as a backward pass gives.
            let mine = Tensor::<B, 1>::full([a.elements], (rank + 1) as f32, &device);
            let mut grads =
                NamedGrads::<B>::from_map(BTreeMap::from([("gradient".to_string(), mine)]));
            let start = Instant::now();
            group.all_reduce_grads(&mut grads)?;
            let sum = grads.into_map().remove("gradient").expect("the gradient");
            // Read back one element: lazy backends have finished the sum by then.
            let element = |at: usize| sum.clone().slice(at..at + 1).into_scalar().elem::<f32>();
            let first = element(0);
            if i >= a.warmup {
                seconds.push(start.elapsed().as_secs_f64());
            }
            let last = element(a.elements - 1);
            ensure!(
                [first, last] == [expected, expected],
                "the all-reduce gave {first} ... {last}, not {expected} (rank {rank} of {world})"
            );
        }
        Ok(Timed {
            seconds,
            world,
            leader: group.is_leader(),
            collectives,
        })
    }
}
