//! The CPU backend is built the way `backend.rs` says: Burn's `flex` with its rayon
//! threads. Enabling only burn's `flex` feature compiles it single-threaded and without
//! SIMD, and nothing fails; the models just run at half speed (docs/performance.md).
//! This test watches the threads of a pool while the backend multiplies large matrices.
#![cfg(target_os = "linux")]

use burn::tensor::{Distribution, Tensor};
use realsyn_model::backend::Cpu;

/// This thread's kernel id, from `/proc/thread-self -> PID/task/TID`.
fn tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("procfs");
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// User + system CPU time of one thread of this process, in clock ticks.
fn cpu_ticks(tid: &String) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_large_matmul_runs_on_every_thread_of_the_pool() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let tids: Vec<String> = pool.broadcast(|_| tid());
    let device = Default::default();
    let a = Tensor::<Cpu, 2>::random([1536, 1536], Distribution::Uniform(-1.0, 1.0), &device);
    let before: Vec<u64> = tids.iter().map(cpu_ticks).collect();
    pool.install(|| {
        for _ in 0..6 {
            let _ = a.clone().matmul(a.clone()).into_data();
        }
    });
    let used: Vec<u64> = tids
        .iter()
        .zip(&before)
        .map(|(t, b)| cpu_ticks(t) - b)
        .collect();
    eprintln!("CPU ticks per pool thread: {used:?}");
    let (least, most) = (*used.iter().min().unwrap(), *used.iter().max().unwrap());
    // Single-threaded, one worker does it all and the other ~0 ticks; split, each does
    // about half. A quarter leaves room for a busy machine.
    assert!(
        most > 0 && least * 4 >= most,
        "CPU ticks per pool thread during 6 matmuls of 1536^2: {used:?}; the flex backend \
         is not using its rayon threads (is burn-flex's `rayon` feature on?)"
    );
}
