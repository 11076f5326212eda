//! The CPU backend is built the way `backend.rs` says: Burn's `flex` with its rayon
//! threads. Enabling only burn's `flex` feature compiles it single-threaded and without
//! SIMD, and nothing fails; the models just run at half speed (docs/performance.md).
//! The first test watches the threads of a pool while the backend multiplies large
//! matrices; the others check the patched, split kernels against plain Rust.
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
    let (least, most) = (*used.iter().min().unwrap(), *used.iter().max().unwrap());
    // Single-threaded, one worker does it all and the other ~0 ticks; split, each does
    // about half. An eighth leaves room for the other tests of this file running beside.
    assert!(
        most > 0 && least * 8 >= most,
        "CPU ticks per pool thread during 6 matmuls of 1536^2: {used:?}; the flex backend \
         is not using its rayon threads (is burn-flex's `rayon` feature on?)"
    );
}

// The patched backend (third_party/burn-flex/PATCHES.md) splits elementwise work, layer
// norm's broadcasts and N-d copies into chunks over its threads. Each case below is
// large enough to be split, with lengths that are not multiples of a chunk or a row, and
// is checked element by element against plain Rust on the same numbers.

const ROWS: usize = 301;
const COLS: usize = 771; // 232,071 elements: seven chunks and a ragged end

fn values<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// The elements of a (permuted) view in logical order, through a reshape to 1-d:
/// the contiguous copy the patch changed.
fn flattened<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    let n = t.shape().num_elements();
    values(t.reshape([n]))
}

fn input() -> (Tensor<Cpu, 2>, Vec<f32>) {
    let data: Vec<f32> = (0..ROWS * COLS)
        .map(|i| ((i * 7919) % 1013) as f32 / 101.3 - 5.0)
        .collect();
    let t =
        Tensor::<Cpu, 1>::from_floats(data.as_slice(), &Default::default()).reshape([ROWS, COLS]);
    (t, data)
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}

#[test]
fn split_elementwise_ops_match_plain_rust() {
    let (x, v) = input();
    let y = x.clone().flip([0]); // a second operand with different numbers
    let w: Vec<f32> = values(y.clone());

    // In place (a unique tensor), SIMD add / mul; then the allocating paths.
    let sum: Vec<f32> = v.iter().zip(&w).map(|(a, b)| a + b).collect();
    assert_close(
        &values(x.clone() * 1.0 + y.clone()),
        &sum,
        "unique + unique",
    );
    let prod: Vec<f32> = v.iter().zip(&w).map(|(a, b)| a * b).collect();
    assert_close(&values(x.clone() * y.clone()), &prod, "shared * shared");
    let scaled: Vec<f32> = v.iter().map(|a| a * 3.0 - 1.0).collect();
    assert_close(&values(x.clone() * 3.0 - 1.0), &scaled, "scalar ops");
    let exp: Vec<f32> = v.iter().map(|a| a.exp()).collect();
    assert_close(&values(x.clone().exp()), &exp, "exp, shared input");
    assert_close(&values((x.clone() * 1.0).exp()), &exp, "exp, in place");

    // Views: an offset slice (one block) and a transpose (storage order).
    let tail = values(x.clone().slice([1..ROWS, 0..COLS]).exp());
    assert_close(&tail, &exp[COLS..], "exp of a row slice");
    let t = values(x.clone().transpose().exp());
    let t_want: Vec<f32> = (0..COLS * ROWS)
        .map(|i| exp[(i % ROWS) * COLS + i / ROWS])
        .collect();
    assert_close(&t, &t_want, "exp of a transpose");
    let sliced_sum =
        values(x.clone().slice([1..ROWS, 0..COLS]) + y.clone().slice([1..ROWS, 0..COLS]));
    assert_close(&sliced_sum, &sum[COLS..], "slice + slice");
}

#[test]
fn split_layer_norm_broadcasts_match_plain_rust() {
    let (x, v) = input();
    // Shared row: x + bias[COLS], as layer norm's beta.
    let bias: Vec<f32> = (0..COLS).map(|j| j as f32 * 0.01).collect();
    let b = Tensor::<Cpu, 1>::from_floats(bias.as_slice(), &Default::default());
    let got = values(x.clone() * 1.0 + b.unsqueeze::<2>());
    let want: Vec<f32> = v
        .iter()
        .enumerate()
        .map(|(i, a)| a + bias[i % COLS])
        .collect();
    assert_close(&got, &want, "row + shared bias");
    // Per-row scalar: x - mean over the row, as layer norm's centring.
    let mean = x.clone().mean_dim(1);
    let m = values(mean.clone());
    let got = values(x.clone() * 1.0 - mean);
    let want: Vec<f32> = v.iter().enumerate().map(|(i, a)| a - m[i / COLS]).collect();
    assert_close(&got, &want, "row - its mean");
}

#[test]
fn split_permuted_copies_match_plain_rust() {
    // Attention's head split: [b, n, 3, h, d] -> [3, b, h, n, d], inner run d.
    let (b, n, h, d) = (5usize, 49usize, 12usize, 64usize);
    let len = b * n * 3 * h * d;
    let data: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let t = Tensor::<Cpu, 1>::from_floats(data.as_slice(), &Default::default())
        .reshape([b, n, 3, h, d]);
    let got = flattened(t.clone().permute([2, 0, 3, 1, 4]));
    let mut want = Vec::with_capacity(len);
    for s in 0..3 {
        for bi in 0..b {
            for hi in 0..h {
                for ni in 0..n {
                    for di in 0..d {
                        want.push(data[(((bi * n + ni) * 3 + s) * h + hi) * d + di]);
                    }
                }
            }
        }
    }
    assert_eq!(got, want, "head split permute");
    // An inner dimension with a stride (no contiguous run): [b, n, 3h, d] -> [b, d, 3h, n].
    let t = t.reshape([b, n, 3 * h, d]);
    let got = flattened(t.permute([0, 3, 2, 1]));
    let mut want = Vec::with_capacity(len);
    for bi in 0..b {
        for di in 0..d {
            for ci in 0..3 * h {
                for ni in 0..n {
                    want.push(data[((bi * n + ni) * 3 * h + ci) * d + di]);
                }
            }
        }
    }
    assert_eq!(got, want, "strided inner permute");
}
