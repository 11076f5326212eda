//! `realsyn train` as several processes on loopback, started the way torchrun and
//! Slurm start them (their environment variables), on real Fashion-MNIST shards:
//!
//! - 2 and 4 processes (with and without accumulation) reach the weights of 1
//!   process with the same global batch;
//! - a SIGKILL of one rank stops the others with a message naming it, and
//!   `--resume latest` continues the job exactly, on the same or another world size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use realsyn_data::datasets::fashion_mnist::{self, DEBIAN_DIR};
use realsyn_train::metrics::StepRecord;

/// Launcher variables a test run must not inherit.
const LAUNCH_VARS: [&str; 13] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_JOB_NODELIST",
    "SLURM_STEP_NODELIST",
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_STEP_NUM_TASKS",
];

#[derive(Clone, Copy)]
enum Launcher {
    Torchrun,
    Slurm,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    realsyn_train::distributed::launch::local_rendezvous_port().unwrap()
}

/// 1,024 training images in 8 shards of 128.
fn data(tmp: &Path) -> PathBuf {
    assert!(
        Path::new(DEBIAN_DIR)
            .join("train-images-idx3-ubyte.gz")
            .is_file(),
        "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist (the README setup and .ci/run do)"
    );
    let out = tmp.join("fm");
    fashion_mnist::convert(Path::new(DEBIAN_DIR), &out, 128, Some(1024), 0).unwrap();
    out
}

/// The tiny Fashion-MNIST CLIP, a global batch of 32 in 4 data streams.
fn recipe(tmp: &Path, data: &Path, out: &Path, steps: u64) -> PathBuf {
    let text = format!(
        r#"
[model]
arch = "{arch}"
[data]
train = "{data}/train/{{00000..00007}}.tar"
num_samples = 1024
workers = 1
shuffle_buffer = 100
streams = 4
[train]
epochs = 1
batch_size = 32
lr = 2e-3
seed = 11
max_steps = {steps}
[output]
dir = "{out}"
checkpoint_every = 3
log_every = 1
"#,
        arch = repo()
            .join("recipes/models/fashion-mnist-tiny.json")
            .display(),
        data = data.display(),
        out = out.display(),
    );
    let p = tmp.join(format!(
        "{}.toml",
        out.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&p, text).unwrap();
    p
}

/// Start `world` ranks of `realsyn train --recipe R EXTRA...` as `launcher` would.
fn launch(world: usize, launcher: Launcher, recipe: &Path, extra: &[&str]) -> Vec<Child> {
    launch_with_env(world, launcher, recipe, extra, &[])
}

/// [`launch`] with `vars` set in every rank's environment.
fn launch_with_env(
    world: usize,
    launcher: Launcher,
    recipe: &Path,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> Vec<Child> {
    let port = free_port().to_string();
    (0..world)
        .map(|rank| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_realsyn"));
            cmd.args(["train", "--recipe"]).arg(recipe).args(extra);
            for v in LAUNCH_VARS {
                cmd.env_remove(v);
            }
            cmd.env_remove("REALSYN_COLLECTIVES");
            cmd.envs(vars.iter().copied());
            // Two cores for up to four processes.
            cmd.env("RAYON_NUM_THREADS", "1");
            if world > 1 {
                let (r, w) = (rank.to_string(), world.to_string());
                match launcher {
                    Launcher::Torchrun => cmd
                        .env("RANK", &r)
                        .env("WORLD_SIZE", &w)
                        .env("LOCAL_RANK", &r)
                        .env("MASTER_ADDR", "127.0.0.1")
                        .env("MASTER_PORT", &port),
                    // srun's variables; the rendezvous host comes from the node list.
                    Launcher::Slurm => cmd
                        .env("SLURM_STEP_ID", "0")
                        .env("SLURM_STEP_NUM_TASKS", &w)
                        .env("SLURM_PROCID", &r)
                        .env("SLURM_NTASKS", &w)
                        .env("SLURM_LOCALID", &r)
                        .env("SLURM_JOB_NODELIST", "localhost")
                        .env("SLURM_JOB_ID", "4242")
                        .env("MASTER_PORT", &port),
                };
            }
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

fn wait_all(children: Vec<Child>) -> Vec<Output> {
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

fn run(world: usize, launcher: Launcher, recipe: &Path, extra: &[&str]) {
    for (rank, out) in wait_all(launch(world, launcher, recipe, extra))
        .iter()
        .enumerate()
    {
        assert!(
            out.status.success(),
            "rank {rank} of {world} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn weights(run: &Path, step: u64) -> BTreeMap<String, Vec<f32>> {
    let (tensors, _) = realsyn_model::clip::weights::read_safetensors(
        &run.join(format!("checkpoints/step_{step:08}/model.safetensors")),
    )
    .unwrap();
    tensors
        .keys()
        .map(|k| (k.clone(), tensors.get(k).unwrap().data.clone()))
        .collect()
}

/// The largest absolute difference between two runs' weights.
fn max_diff(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .flat_map(|(k, x)| x.iter().zip(&b[k]).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn losses(run: &Path) -> BTreeMap<u64, f64> {
    realsyn_train::metrics::read_losses(run).unwrap()
}

/// One field of every step record of `metrics.jsonl`, by step.
fn per_step(run: &Path, field: fn(&StepRecord) -> f64) -> BTreeMap<u64, f64> {
    let records = realsyn_train::metrics::read_metrics(run).unwrap();
    realsyn_train::metrics::steps(&records)
        .into_iter()
        .map(|(s, r)| (s, field(r)))
        .collect()
}

/// The global gradient norm per step: AdamW hides a gradient off by a constant
/// factor (e.g. averaged where it must be summed), the norm does not.
fn grad_norms(run: &Path) -> BTreeMap<u64, f64> {
    per_step(run, |r| r.grad_norm)
}

/// The logit scale after each update (clamped, so its own path is checked too).
fn logit_scales(run: &Path) -> BTreeMap<u64, f64> {
    per_step(run, |r| r.logit_scale)
}

fn state(run: &Path, step: u64) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(run.join(format!("checkpoints/step_{step:08}/state.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn two_and_four_processes_train_like_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let single = tmp.path().join("single");
    run(
        1,
        Launcher::Torchrun,
        &recipe(tmp.path(), &data, &single, 5),
        &[],
    );
    // 2 ranks with torch's foreach AdamW (what a GPU runs): each backward pass's
    // gradients packed into one buffer, the ring summing it whole, the parameters
    // views of the optimiser's flat buffers.
    let two = tmp.path().join("two");
    run(
        2,
        Launcher::Torchrun,
        &recipe(tmp.path(), &data, &two, 5),
        &["--set", "train.foreach=true"],
    );
    // 4 ranks, each splitting its 8 rows into 2 micro-batches: the gathered cache.
    let four = tmp.path().join("four");
    let accum = ["--set", "train.accum_freq=2"];
    run(
        4,
        Launcher::Slurm,
        &recipe(tmp.path(), &data, &four, 5),
        &accum,
    );

    let base = weights(&single, 5);
    let (l1, l2, l4) = (losses(&single), losses(&two), losses(&four));
    assert_eq!(l1.len(), 5);
    for (name, run, l) in [("2 processes", &two, &l2), ("4 processes", &four, &l4)] {
        let d = max_diff(&base, &weights(run, 5));
        assert!(d < 1e-5, "{name}: weights differ from 1 process by {d}");
        for (step, loss) in &l1 {
            assert!(
                (l[step] - loss).abs() < 1e-5,
                "{name}, step {step}: loss {} vs {loss}",
                l[step]
            );
        }
        let (g1, g) = (grad_norms(&single), grad_norms(run));
        for (step, norm) in &g1 {
            assert!(
                (g[step] - norm).abs() < 1e-5 * norm,
                "{name}, step {step}: gradient norm {} vs {norm}",
                g[step]
            );
        }
        let (s1, s) = (logit_scales(&single), logit_scales(run));
        for (step, scale) in &s1 {
            assert!(
                (s[step] - scale).abs() < 1e-6,
                "{name}, step {step}: logit scale {} vs {scale}",
                s[step]
            );
        }
        // Rank 0 alone writes the run; the state lists all 4 streams.
        assert_eq!(state(run, 5)["streams"].as_array().unwrap().len(), 4);
        assert_eq!(state(run, 5)["data"], state(&single, 5)["data"]);
    }
    // And the training moved the weights at all (the comparison is not vacuous).
    let start = weights(&single, 3);
    assert!(max_diff(&base, &start) > 1e-3);
}

#[test]
fn a_killed_rank_stops_the_job_and_it_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let full = tmp.path().join("full");
    run(
        2,
        Launcher::Torchrun,
        &recipe(tmp.path(), &data, &full, 8),
        &[],
    );

    let killed = tmp.path().join("killed");
    let r = recipe(tmp.path(), &data, &killed, 8);
    let mut ranks = launch(2, Launcher::Torchrun, &r, &[]);
    // Kill rank 1 once rank 0 has logged step 4 (the newest checkpoint is step 3).
    let metrics = killed.join("metrics.jsonl");
    let started = Instant::now();
    loop {
        let logged = std::fs::read_to_string(&metrics)
            .map(|t| t.lines().filter(|l| l.contains("\"loss\"")).count())
            .unwrap_or(0);
        if logged >= 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "rank 0 never reached step 4"
        );
        assert!(ranks[0].try_wait().unwrap().is_none(), "rank 0 ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    ranks[1].kill().unwrap(); // SIGKILL
    let leader = ranks.remove(0);
    let waited = Instant::now();
    let out = leader.wait_with_output().unwrap();
    assert!(
        waited.elapsed() < Duration::from_secs(60),
        "rank 0 took {:?} to notice",
        waited.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rank 0 went on alone");
    assert!(err.contains("lost rank 1"), "{err}");
    assert!(err.contains("--resume latest"), "{err}");
    assert!(!killed.join("summary.json").exists());

    // The same world size: bit for bit.
    let resume = ["--resume", "latest"];
    run(2, Launcher::Torchrun, &r, &resume);
    let (a, b) = (weights(&full, 8), weights(&killed, 8));
    assert_eq!(max_diff(&a, &b), 0.0, "resumed weights differ");
    let (la, lb) = (losses(&full), losses(&killed));
    for (step, loss) in &la {
        assert_eq!(lb[step].to_bits(), loss.to_bits(), "step {step}");
    }
    assert_eq!(state(&full, 8)["skips"], state(&killed, 8)["skips"]);

    // Another world size that divides the 4 streams: the same run within rounding.
    let moved = tmp.path().join("moved");
    std::fs::create_dir_all(moved.join("checkpoints")).unwrap();
    let latest = std::fs::read_to_string(killed.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step_00000008");
    copy_dir(
        &killed.join("checkpoints/step_00000006"),
        &moved.join("checkpoints/step_00000006"),
    );
    std::fs::write(moved.join("checkpoints/latest"), "step_00000006").unwrap();
    let r = recipe(tmp.path(), &data, &moved, 8);
    run(4, Launcher::Torchrun, &r, &resume);
    let d = max_diff(&a, &weights(&moved, 8));
    assert!(d < 1e-5, "resumed on 4 ranks: {d}");

    // A world size that does not divide the streams is refused before any work.
    let out = wait_all(launch(8, Launcher::Torchrun, &r, &resume));
    let err = String::from_utf8_lossy(&out[0].stderr);
    assert!(!out[0].status.success());
    assert!(err.contains("4 data streams"), "{err}");
}

#[test]
fn the_collectives_are_chosen_by_name_and_nccl_needs_gpus() {
    // NCCL carries GPU ranks' collectives; asked for on the CPU, or asked for by a
    // name realsyn does not know, every rank stops before its first step and says why.
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    for (choice, says) in [
        ("nccl", "REALSYN_COLLECTIVES=nccl needs"),
        ("gloo", "use auto (the default), nccl or tcp"),
    ] {
        let out = tmp.path().join(choice);
        let r = recipe(tmp.path(), &data, &out, 2);
        let vars = [("REALSYN_COLLECTIVES", choice)];
        for (rank, o) in wait_all(launch_with_env(2, Launcher::Torchrun, &r, &[], &vars))
            .iter()
            .enumerate()
        {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "rank {rank} trained with {choice}");
            assert!(err.contains(says), "rank {rank}, {choice}: {err}");
        }
        assert!(
            !out.join("metrics.jsonl").exists(),
            "{choice}: a step was taken"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}
