//! The CPU backend is built the way `backend.rs` says: Burn's `flex` with its rayon
//! threads. Enabling only burn's `flex` feature compiles it single-threaded and without
//! SIMD, and nothing fails; the models just run at half speed (docs/performance.md).
//! The first test watches the threads of a pool while the backend multiplies large
//! matrices; the others check the patched, split kernels against plain Rust (and the
//! split sums against one thread's, bit for bit).
#![cfg(target_os = "linux")]

use burn::tensor::{Distribution, Tensor};
use realsyn_model::backend::{Cpu, CpuAutodiff};

/// This thread's kernel id, from `/proc/thread-self -> PID/task/TID`.
fn tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("procfs");
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// Field `n` (1-based, as `man 5 proc` numbers them) of a thread's `stat` file.
fn stat_field(path: &str, n: usize) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap();
    // The fields after `(comm)` start at field 3 (state).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(n - 3).unwrap().parse().unwrap()
}

/// User + system CPU time (fields 14, 15) of one thread of this process, in ticks.
fn cpu_ticks(tid: &String) -> u64 {
    let path = format!("/proc/self/task/{tid}/stat");
    stat_field(&path, 14) + stat_field(&path, 15)
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
    // Rows that are runs with gaps between them (one of several gradients side by
    // side in a buffer): a column range of a matrix.
    let (rows, cols) = (400usize, 600usize);
    let t = Tensor::<Cpu, 1>::from_floats(&data[..rows * cols], &Default::default())
        .reshape([rows, cols]);
    let got = flattened(t.slice([0..rows, 100..401]));
    let want: Vec<f32> = (0..rows)
        .flat_map(|r| data[r * cols + 100..r * cols + 401].iter().copied())
        .collect();
    assert_eq!(got, want, "column range");
}

/// The sums of `x` along each reduced layout the patch splits: the last dimension
/// (layer norm's mean), the first (a bias gradient over `[batch * tokens, d]`), a
/// middle one (`[b, n, d]` over tokens) and the first of a transposed view.
fn sum_reductions(x: &Tensor<Cpu, 2>) -> [Vec<f32>; 4] {
    [
        values(x.clone().sum_dim(1)),
        values(x.clone().sum_dim(0)),
        values(x.clone().reshape([7, 43, COLS]).sum_dim(1)),
        values(x.clone().transpose().sum_dim(0)),
    ]
}

#[test]
fn split_sum_reductions_match_plain_rust_and_the_unsplit_sums_bit_for_bit() {
    let (x, v) = input();
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let split = pool(3).install(|| sum_reductions(&x));
    let whole = pool(1).install(|| sum_reductions(&x));
    // Each output keeps its order of additions, whichever thread computes it.
    assert_eq!(split, whole, "split sums differ from one thread's");

    let at = |r: usize, c: usize| v[r * COLS + c] as f64;
    let rows: Vec<f64> = (0..ROWS)
        .map(|r| (0..COLS).map(|c| at(r, c)).sum())
        .collect();
    let cols: Vec<f64> = (0..COLS)
        .map(|c| (0..ROWS).map(|r| at(r, c)).sum())
        .collect();
    let middle: Vec<f64> = (0..7 * COLS)
        .map(|i| (0..43).map(|t| at((i / COLS) * 43 + t, i % COLS)).sum())
        .collect();
    let [by_row, by_col, by_middle, by_transposed] = split;
    for (what, got, want, terms) in [
        ("rows", by_row, &rows, COLS),
        ("columns", by_col, &cols, ROWS),
        ("middle dimension", by_middle, &middle, 43),
        ("first dimension of a transpose", by_transposed, &rows, COLS),
    ] {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            // Elements are at most 5 in size: f32 rounding of a sum of `terms` of them.
            let tolerance = 5.0 * terms as f64 * 1e-6;
            assert!(
                (*g as f64 - w).abs() <= tolerance,
                "sum over {what}: element {i} is {g}, expected {w}"
            );
        }
    }
}

/// Minor page faults of the calling thread so far (field 10).
fn minor_faults() -> u64 {
    stat_field("/proc/thread-self/stat", 10)
}

#[test]
fn a_matmul_output_is_not_copied_on_the_calling_thread() {
    // Upstream allocated every output as bytes and `Bytes::from_bytes_vec` copied it
    // to an aligned buffer: the calling thread faulted in and wrote the whole output
    // (and its copy) before the pool's threads ran the GEMM. Patched, the zeroed
    // output is first touched by the GEMM on the pool's threads.
    let device = Default::default();
    let n = 2048; // a 16 MiB output: 4096 pages
    let a = Tensor::<Cpu, 2>::random([n, 64], Distribution::Uniform(-1.0, 1.0), &device);
    let b = Tensor::<Cpu, 2>::random([64, n], Distribution::Uniform(-1.0, 1.0), &device);
    let pages = (n * n * 4 / 4096) as u64;
    let mut least = u64::MAX;
    for _ in 0..3 {
        let before = minor_faults();
        let c = a.clone().matmul(b.clone());
        least = least.min(minor_faults() - before);
        drop(c);
    }
    assert!(
        least * 4 < pages,
        "the calling thread took {least} page faults for a {pages}-page matmul output"
    );
}

#[test]
fn a_shared_operand_is_not_copied_on_the_calling_thread() {
    // `x * x` (a gradient norm's squares) or `x + y` with x kept for the backward
    // pass: lhs is shared, so the op cannot write into it. Upstream copied lhs on the
    // calling thread first (faulting in the whole output there) and then ran the op;
    // patched, the pool's threads write the output in one pass.
    let device = Default::default();
    let n = 1 << 22; // 16 MiB: 4096 pages
    let x = Tensor::<Cpu, 1>::random([n], Distribution::Uniform(-1.0, 1.0), &device);
    let pages = (n * 4 / 4096) as u64;
    let mut least = u64::MAX;
    for _ in 0..3 {
        let before = minor_faults();
        let squares = x.clone() * x.clone();
        least = least.min(minor_faults() - before);
        drop(squares);
    }
    assert!(
        least * 4 < pages,
        "the calling thread took {least} page faults for a {pages}-page product"
    );
    let v = values(x.clone());
    let want: Vec<f32> = v.iter().map(|a| a * a).collect();
    assert_close(&values(x.clone() * x.clone()), &want, "x * x");
    assert_eq!(values(x), v, "the shared operand is unchanged");
}

#[test]
fn an_embedding_gradient_adds_its_rows_in_place() {
    // An embedding's backward adds the used rows' gradients into fresh zeros of the
    // table's size (CLIP's 49,408 x 512 tokens: 100 MB). Upstream copied the zeros
    // first; patched, only the rows added to are touched.
    use burn::tensor::{IndexingUpdateOp, Int};
    let device = Default::default();
    let (rows, cols) = (16384, 256); // 16 MiB
    let pages = (rows * cols * 4 / 4096) as u64;
    let ids = [3i64, 7, 3, 16383];
    let indices = || Tensor::<Cpu, 1, Int>::from_ints(ids, &device);
    let grads = || {
        let g: Vec<f32> = (0..ids.len() * cols).map(|i| i as f32).collect();
        Tensor::<Cpu, 1>::from_floats(g.as_slice(), &device).reshape([ids.len(), cols])
    };
    let zeros = Tensor::<Cpu, 2>::zeros([rows, cols], &device);
    let before = minor_faults();
    let table = zeros.select_assign(0, indices(), grads(), IndexingUpdateOp::Add);
    let faults = minor_faults() - before;
    assert!(
        faults * 4 < pages,
        "{faults} page faults for a {pages}-page table"
    );
    let check = |table: Tensor<Cpu, 2>, what: &str| {
        let t = values(table);
        let g = |k: usize, j: usize| (k * cols + j) as f32;
        for j in [0, 1, cols - 1] {
            assert_eq!(t[3 * cols + j], g(0, j) + g(2, j), "{what}: row 3 (twice)");
            assert_eq!(t[7 * cols + j], g(1, j), "{what}: row 7");
            assert_eq!(t[16383 * cols + j], g(3, j), "{what}: last row");
            assert_eq!(t[5 * cols + j], 0.0, "{what}: an unused row");
        }
    };
    check(table, "in place");
    // A table something else holds is left as it was.
    let kept = Tensor::<Cpu, 2>::zeros([rows, cols], &device);
    check(
        kept.clone()
            .select_assign(0, indices(), grads(), IndexingUpdateOp::Add),
        "copied",
    );
    assert!(
        values(kept).iter().all(|&x| x == 0.0),
        "the held table changed"
    );
}

// Third round: strided operands of the SIMD binary ops (an offset slice, a flip) are
// copied once instead of walked element by element, a table broadcast over leading
// dimensions takes the shared-row kernel, and attention's heads are split over threads.

/// `[b, h, n, d]` numbers, distinct per element.
fn heads_input(b: usize, h: usize, n: usize, d: usize, seed: usize) -> Vec<f32> {
    (0..b * h * n * d)
        .map(|i| (((i + seed) * 7919) % 1013) as f32 / 101.3 - 5.0)
        .collect()
}

fn cpu_tensor<const D: usize>(data: &[f32], shape: [usize; D]) -> Tensor<Cpu, D> {
    Tensor::<Cpu, 1>::from_floats(data, &Default::default()).reshape(shape)
}

/// The elements of a CPU backend's primitive tensor of rank `D` (an op's result).
fn flex_values<const D: usize>(t: burn_flex::FlexTensor) -> Vec<f32> {
    values(Tensor::<Cpu, D>::from_primitive(
        burn::tensor::TensorPrimitive::Float(t),
    ))
}

#[test]
fn strided_and_block_broadcast_operands_match_plain_rust() {
    let (b, h, n, d) = (4usize, 12usize, 50usize, 64usize);
    let block = n * d;
    // Three stacked `[b, h, n, d]` tensors, as the packed q/k/v: the second is a
    // contiguous slice at an offset.
    let packed = heads_input(3 * b, h, n, d, 0);
    let qkv = cpu_tensor(&packed, [3 * b, h, n, d]);
    let k = qkv.clone().slice([b..2 * b]);
    let k_values = &packed[b * h * block..2 * b * h * block];
    let table: Vec<f32> = (0..block).map(|i| (i % 97) as f32 * 0.03 - 1.0).collect();
    let t = cpu_tensor(&table, [1, 1, n, d]);
    // Each `[n, d]` block of `v` times the table.
    let times_table = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(i, x)| x * table[i % block])
            .collect()
    };

    let want = times_table(k_values);
    assert_close(
        &values(k.clone() * t.clone()),
        &want,
        "offset slice * [1, 1, n, d] table",
    );
    let unique = k.clone() * 1.0; // a unique, offset-0 tensor: the in-place path
    assert_close(
        &values(unique * t.clone()),
        &want,
        "tensor * [1, 1, n, d] table, in place",
    );

    // Pairs swapped by a flip of the last axis of `[.., d / 2, 2]`: a negative stride.
    let flipped = k.clone().reshape([b, h, n, d / 2, 2]).flip([4]);
    let swap_want: Vec<f32> = (0..k_values.len()).map(|i| k_values[i ^ 1]).collect();
    assert_eq!(
        flattened(flipped.clone().reshape([b, h, n, d])),
        swap_want,
        "pairs swapped by a flip"
    );
    let neg_want: Vec<f32> = swap_want.iter().map(|x| -x).collect();
    assert_eq!(
        flattened(flipped.clone().neg()),
        neg_want,
        "neg of a flipped view"
    );
    let t5 = t.clone().reshape([1, 1, n, d / 2, 2]);
    assert_close(
        &flattened(flipped * t5),
        &times_table(&swap_want),
        "flipped view * broadcast table",
    );

    // A row slice (a strided lhs, no broadcast) times a transposed rhs.
    let x = Tensor::<Cpu, 1>::from_floats(&packed[..b * h * block], &Default::default())
        .reshape([b * h * n, d]);
    let rows = x.clone().slice([0..b * h * n, 8..d]);
    let other = Tensor::<Cpu, 1>::from_floats(k_values, &Default::default())
        .reshape([d, b * h * n])
        .transpose()
        .slice([0..b * h * n, 8..d]);
    let got = values(rows * other);
    let want: Vec<f32> = (0..b * h * n * (d - 8))
        .map(|i| {
            let (r, c) = (i / (d - 8), 8 + i % (d - 8));
            packed[r * d + c] * packed[b * h * block + c * (b * h * n) + r]
        })
        .collect();
    assert_close(&got, &want, "row slice * transposed slice");
}

/// Softmax attention of one head in f64, `scores + bias`, keys after `causal` hidden.
fn attention_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    d: usize,
    causal: bool,
) -> Vec<f32> {
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0f32; n * d];
    for i in 0..n {
        let keys = if causal { i + 1 } else { n };
        let scores: Vec<f64> = (0..keys)
            .map(|j| {
                let dot: f64 = (0..d)
                    .map(|c| q[i * d + c] as f64 * k[j * d + c] as f64)
                    .sum();
                dot * scale + bias.map_or(0.0, |b| b[i * n + j] as f64)
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::MIN, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for c in 0..d {
            let o: f64 = (0..keys).map(|j| weights[j] * v[j * d + c] as f64).sum();
            out[i * d + c] = (o / total) as f32;
        }
    }
    out
}

#[test]
fn attention_split_over_heads_matches_plain_rust() {
    // The non-tiled kernel (up to 512 tokens) and the tiled one (577 tokens: a
    // ViT-L/14 at 336 px), both split over heads.
    for (b, h, n, d) in [(2usize, 6usize, 97usize, 64usize), (1, 3, 577, 32)] {
        attention_split_over_heads_matches_plain_rust_for(b, h, n, d);
    }
}

fn attention_split_over_heads_matches_plain_rust_for(b: usize, h: usize, n: usize, d: usize) {
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    let q = heads_input(b, h, n, d, 1)
        .iter()
        .map(|x| x * 0.2)
        .collect::<Vec<_>>();
    let k = heads_input(b, h, n, d, 2)
        .iter()
        .map(|x| x * 0.2)
        .collect::<Vec<_>>();
    let v = heads_input(b, h, n, d, 3);
    let bias = heads_input(b, h, n, n, 4)
        .iter()
        .map(|x| x * 0.1)
        .collect::<Vec<_>>();
    let head = n * d;
    for (causal, with_bias) in [(false, false), (true, true)] {
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: causal,
        };
        let got = values(attention(
            cpu_tensor(&q, [b, h, n, d]),
            cpu_tensor(&k, [b, h, n, d]),
            cpu_tensor(&v, [b, h, n, d]),
            None,
            with_bias.then(|| cpu_tensor(&bias, [b, h, n, n])),
            options,
        ));
        for bh in 0..b * h {
            let at = bh * head..(bh + 1) * head;
            let want = attention_reference(
                &q[at.clone()],
                &k[at.clone()],
                &v[at.clone()],
                with_bias.then(|| &bias[bh * n * n..(bh + 1) * n * n]),
                n,
                d,
                causal,
            );
            for (i, (g, w)) in got[at.clone()].iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{n} tokens, causal {causal}, bias {with_bias}: head {bh}, element {i} is {g}, \
                     expected {w}"
                );
            }
        }
    }
}

#[test]
fn attention_gradients_match_the_decomposed_ops() {
    // Under autodiff attention is one node: the backend's fused forward, and a backward
    // that recomputes the weights from q and k (third_party/burn-autodiff PATCHES.md).
    // Its output and gradients against Burn's decomposed attention (`attention_fallback`)
    // differentiated op by op, with a causal mask (also with fewer queries than keys),
    // a bool mask with a fully masked row (also one mask for the whole batch), a bias
    // broadcast over the batch, and a softcap with a custom scale. burn-flex runs its
    // own backward kernel for all but the bias and softcap cases, the float-op default
    // for those.
    check_attention_gradients::<CpuAutodiff, CpuAutodiff>(true);
}

/// Burn's CubeCL backend (`--features wgpu`; lavapipe without a GPU), whose
/// attention is Burn's decomposed kernels with the softmax and its backward as one
/// kernel each (third_party/burn-cubecl), against the CPU backend (checked above),
/// every case of the test above, the fully masked row included. (Burn's
/// decomposition differentiated op by op is no reference on CubeCL: it gave NaN
/// query gradients in the bool-mask case there.)
#[cfg(feature = "wgpu")]
#[test]
fn attention_gradients_match_the_cpu_backends_on_cubecl() {
    check_attention_gradients::<burn::backend::Autodiff<realsyn_model::backend::Wgpu>, CpuAutodiff>(
        false,
    );
}

/// `attention` on `Ad` against `Reference`'s: its decomposition differentiated op by
/// op (`decomposed_reference`), or its own attention.
fn check_attention_gradients<
    Ad: burn::tensor::backend::AutodiffBackend,
    Reference: burn::tensor::backend::AutodiffBackend,
>(
    decomposed_reference: bool,
) {
    use burn::tensor::ops::AttentionModuleOptions;
    let (b, h, d) = (2usize, 3usize, 16usize);
    let options = |scale, softcap, is_causal| AttentionModuleOptions {
        scale,
        softcap,
        is_causal,
    };
    let cases = [
        ("plain", 37, 37, 0, false, options(None, None, false)),
        ("causal", 37, 37, 0, false, options(None, None, true)),
        ("causal, 20 q", 20, 37, 0, false, options(None, None, true)),
        ("bool mask", 37, 37, b, false, options(None, None, false)),
        (
            "one bool mask for the batch",
            37,
            37,
            1,
            false,
            options(None, None, false),
        ),
        ("bias", 37, 37, 0, true, options(None, None, false)),
        (
            "softcap",
            37,
            37,
            b,
            true,
            options(Some(0.4), Some(3.0), false),
        ),
    ];
    for (what, nq, nk, mask_batch, with_bias, options) in cases {
        let with_mask = mask_batch > 0;
        let scaled = |v: Vec<f32>, s: f32| v.into_iter().map(|x| x * s).collect::<Vec<_>>();
        let q = scaled(heads_input(b, h, nq, d, 1), 0.3);
        let k = scaled(heads_input(b, h, nk, d, 2), 0.3);
        let v = heads_input(b, h, nk, d, 3);
        let bias = scaled(heads_input(1, h, nq, nk, 4), 0.2);
        let w = heads_input(b, h, nq, d, 5);
        // Every third key hidden from every query, and query 5 sees nothing.
        let mask: Vec<bool> = (0..mask_batch * h * nq * nk)
            .map(|i| (i % nk) % 3 == 1 || (i / nk) % nq == 5)
            .collect();
        let case = AttentionCase {
            shape: (b, h, nq, nk, d),
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            bias: with_bias.then(|| bias.clone()),
            mask: with_mask.then(|| (mask_batch, mask.clone())),
            w: w.clone(),
            options,
        };
        let (got, want) = (
            attention_run::<Ad>(&case, false),
            attention_run::<Reference>(&case, decomposed_reference),
        );
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: gradients of the same inputs"
        );
        for (name, (g, w)) in ["output", "q grad", "k grad", "v grad", "bias grad"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            assert!(w.iter().any(|x| *x != 0.0), "{what}: {name} all zero");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                // The decomposed softmax's backward divides 0 by an underflowed 0 on
                // the fully masked row, so the bias there gets NaN; its true gradient
                // is 0 (those scores do not reach the output).
                if *name == "bias grad" && (i / nk) % nq == 5 && with_mask {
                    assert_eq!(*g, 0.0, "{what}: {name}[{i}] on the fully masked row");
                    continue;
                }
                assert!(
                    (g - w).abs() <= 2e-5 * w.abs().max(1.0),
                    "{what}: {name}[{i}] is {g}, decomposed {w}"
                );
            }
        }
    }
}

/// One attention case's inputs, as host vectors.
struct AttentionCase {
    shape: (usize, usize, usize, usize, usize),
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    bias: Option<Vec<f32>>,
    mask: Option<(usize, Vec<bool>)>,
    w: Vec<f32>,
    options: burn::tensor::ops::AttentionModuleOptions,
}

/// The output and the gradients of q, k, v (and the bias) of `sum(attention * w)` on
/// `Ad`: through `attention` (one autodiff node), or `decomposed` through Burn's
/// `attention_fallback` differentiated op by op.
fn attention_run<Ad: burn::tensor::backend::AutodiffBackend>(
    case: &AttentionCase,
    decomposed: bool,
) -> Vec<Vec<f32>> {
    use burn::tensor::module::attention;
    use burn::tensor::{Bool, TensorPrimitive};
    let device = Default::default();
    let (b, h, nq, nk, d) = case.shape;
    let options = case.options;
    let tensor = |data: &[f32], shape: [usize; 4]| {
        Tensor::<Ad, 1>::from_floats(data, &device)
            .reshape(shape)
            .require_grad()
    };
    let host = |t: Tensor<Ad, 4>| t.inner().into_data().to_vec::<f32>().unwrap();
    let (q, k, v) = (
        tensor(&case.q, [b, h, nq, d]),
        tensor(&case.k, [b, h, nk, d]),
        tensor(&case.v, [b, h, nk, d]),
    );
    let bias = case.bias.as_ref().map(|bias| tensor(bias, [1, h, nq, nk]));
    let mask = case.mask.as_ref().map(|(mask_batch, mask)| {
        Tensor::<Ad, 1, Bool>::from_bool(mask.as_slice().into(), &device).reshape([
            *mask_batch,
            h,
            nq,
            nk,
        ])
    });
    let out = if decomposed {
        let prim = |t: &Tensor<Ad, 4>| t.clone().into_primitive().tensor();
        Tensor::<Ad, 4>::from_primitive(TensorPrimitive::Float(
            burn::tensor::ops::attention::attention_fallback::<Ad>(
                prim(&q),
                prim(&k),
                prim(&v),
                mask.map(|m| m.into_primitive()),
                bias.as_ref().map(prim),
                options,
            ),
        ))
    } else {
        attention(q.clone(), k.clone(), v.clone(), mask, bias.clone(), options)
    };
    let weights = Tensor::<Ad, 1>::from_floats(case.w.as_slice(), &device).reshape([b, h, nq, d]);
    let grads = (out.clone() * weights).sum().backward();
    let grad = |t: &Tensor<Ad, 4>| {
        let g = t.grad(&grads).expect("a gradient");
        g.into_data().to_vec::<f32>().unwrap()
    };
    let mut all = vec![host(out), grad(&q), grad(&k), grad(&v)];
    all.extend(bias.as_ref().map(grad));
    all
}

#[test]
fn slices_of_one_tensor_add_their_gradients() {
    // Under autodiff a slice's gradient is added into its region of the parent's
    // gradient when the parent already has one (third_party/burn-autodiff PATCHES.md),
    // as attention's q, k and v sliced from one projection do. Overlapping row slices,
    // a column slice and the whole tensor, all of an intermediate (whose gradient is
    // consumed during the backward pass), against the gradient written out by hand.
    use realsyn_model::backend::CpuAutodiff;
    type Ad = CpuAutodiff;
    let device = Default::default();
    let (r, c) = (6usize, 5usize);
    let values = |n: usize, step: f32| (0..n).map(|i| (i as f32 * step).sin()).collect::<Vec<_>>();
    let tensor = |v: &[f32], rows: usize, cols: usize| {
        Tensor::<Ad, 1>::from_floats(v, &device).reshape([rows, cols])
    };
    let (x0, wa, wb, wc, wd) = (
        values(r * c, 0.37),
        values(2 * c, 0.3),
        values(3 * c, 0.7),
        values(r * 2, 1.1),
        values(r * c, 1.3),
    );
    let x = tensor(&x0, r, c).require_grad();
    let y = x.clone().exp();
    let loss = (y.clone().slice([0..2]) * tensor(&wa, 2, c)).sum()
        + (y.clone().slice([1..4]) * tensor(&wb, 3, c)).sum()
        + (y.clone().slice([0..r, 3..5]) * tensor(&wc, r, 2)).sum()
        + (y * tensor(&wd, r, c)).sum();
    let grads = loss.backward();
    let got = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
    for i in 0..r {
        for j in 0..c {
            let mut dy = wd[i * c + j];
            if i < 2 {
                dy += wa[i * c + j];
            }
            if (1..4).contains(&i) {
                dy += wb[(i - 1) * c + j];
            }
            if j >= 3 {
                dy += wc[i * 2 + (j - 3)];
            }
            let want = dy * x0[i * c + j].exp();
            let g = got[i * c + j];
            assert!(
                (g - want).abs() <= 1e-6 * want.abs().max(1.0),
                "x grad [{i}, {j}] is {g}, by hand {want}"
            );
        }
    }
}

/// A slice of a `[6, 5]` intermediate: rows, columns and a column step.
struct SliceTerm {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    step: usize,
}

fn rows(rows: std::ops::Range<usize>) -> SliceTerm {
    SliceTerm {
        rows,
        cols: 0..5,
        step: 1,
    }
}

/// Under autodiff the gradients of slices of one intermediate are held while their
/// regions are disjoint and concatenated when they tile it along its first dimension
/// (attention's q, k and v), else put into zeros; a slice overlapping them, or any
/// other use, adds (third_party/burn-autodiff PATCHES.md). Backward runs in reverse
/// creation order, so each case below lists its terms as they are made; the last
/// ones are differentiated first. Against the gradient written by hand.
fn slice_gradient_cases() -> Vec<(&'static str, Vec<SliceTerm>, bool)> {
    let cols = |cols: std::ops::Range<usize>, step| SliceTerm {
        rows: 0..6,
        cols,
        step,
    };
    vec![
        (
            "q, k and v",
            vec![rows(0..2), rows(2..4), rows(4..6)],
            false,
        ),
        (
            "tiling rows, then an overlapping slice, a strided one and the whole",
            vec![
                cols(0..5, 2),
                rows(3..6),
                rows(0..2),
                rows(2..4),
                rows(4..6),
            ],
            true,
        ),
        (
            "disjoint rows with a gap",
            vec![rows(0..2), rows(4..6)],
            true,
        ),
        (
            "disjoint columns",
            vec![cols(0..2, 1), cols(2..5, 1)],
            false,
        ),
        ("one slice", vec![rows(1..3)], false),
    ]
}

#[test]
fn slices_gradients_are_held_concatenated_or_added() {
    check_slice_gradients::<realsyn_model::backend::CpuAutodiff>();
}

/// The same on CubeCL, where q, k and v's concatenation is one place kernel.
#[cfg(feature = "wgpu")]
#[test]
fn slices_gradients_are_held_concatenated_or_added_on_cubecl() {
    check_slice_gradients::<burn::backend::Autodiff<realsyn_model::backend::Wgpu>>();
}

fn check_slice_gradients<AB: burn::tensor::backend::AutodiffBackend>() {
    let device = Default::default();
    let (r, c) = (6usize, 5usize);
    let values = |n: usize, step: f32| (0..n).map(|i| (i as f32 * step).cos()).collect::<Vec<_>>();
    let tensor = |v: &[f32], rows: usize, cols: usize| {
        Tensor::<AB, 1>::from_floats(v, &device).reshape([rows, cols])
    };
    let x0 = values(r * c, 0.29);
    let w_whole = values(r * c, 0.9);
    for (case, terms, whole_first) in slice_gradient_cases() {
        let x = tensor(&x0, r, c).require_grad();
        let y = x.clone().exp();
        // Made first, so differentiated last: a registration on top of the slices'.
        let mut loss = whole_first.then(|| (y.clone() * tensor(&w_whole, r, c)).sum());
        let mut dy = if whole_first {
            w_whole.clone()
        } else {
            vec![0.0f32; r * c]
        };
        for (k, term) in terms.iter().enumerate() {
            let n_cols = term.cols.len().div_ceil(term.step);
            let w = values(term.rows.len() * n_cols, 0.3 + 0.2 * k as f32);
            let part = y.clone().slice(burn::tensor::s![
                term.rows.clone(),
                term.cols.clone();term.step as isize
            ]);
            let term_loss = (part * tensor(&w, term.rows.len(), n_cols)).sum();
            loss = Some(match loss {
                Some(l) => l + term_loss,
                None => term_loss,
            });
            for i in term.rows.clone() {
                for j in term.cols.clone().step_by(term.step) {
                    let local = (i - term.rows.start) * n_cols + (j - term.cols.start) / term.step;
                    dy[i * c + j] += w[local];
                }
            }
        }
        let grads = loss.expect("a loss").backward();
        let got = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        for i in 0..r * c {
            let want = dy[i] * x0[i].exp();
            assert!(
                (got[i] - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{case}: x grad [{}, {}] is {}, by hand {want}",
                i / c,
                i % c,
                got[i]
            );
        }
    }
}

#[test]
fn tensors_are_concatenated() {
    check_cat::<Cpu>();
}

/// CubeCL joins tensors that lie end to end with the place kernel, others with a
/// slice-assign each (third_party/burn-cubecl PATCHES.md).
#[cfg(feature = "wgpu")]
#[test]
fn tensors_are_concatenated_on_cubecl() {
    check_cat::<realsyn_model::backend::Wgpu>();
}

/// `Tensor::cat` against concatenation in Rust: along the first dimension, along a
/// later one after size-1 dimensions (both end to end in memory), and along a later
/// one after a larger dimension (interleaved), one input a transposed view and one
/// a column range of a wider tensor (rows with gaps); then
/// the same large enough to be split over threads (chunks that end mid-row).
fn check_cat<B: burn::tensor::backend::Backend>() {
    let device = Default::default();
    let values = |n: usize, at: usize| (0..n).map(|i| (at + i) as f32 * 0.5).collect::<Vec<_>>();
    let cases: [(&[[usize; 3]], usize); 6] = [
        (&[[2, 3, 4], [1, 3, 4], [3, 3, 4]], 0),
        (&[[1, 2, 5], [1, 3, 5], [1, 1, 5]], 1),
        (&[[2, 2, 5], [2, 3, 5]], 1),
        (&[[300, 7, 50], [200, 7, 50], [1, 7, 50]], 0),
        (&[[3, 500, 51], [3, 201, 51], [3, 1, 51]], 1),
        (&[[61, 41, 30], [61, 41, 7]], 2),
    ];
    for (shapes, dim) in cases {
        let mut host = Vec::new();
        let mut tensors = Vec::new();
        for (k, shape) in shapes.iter().enumerate() {
            let v = values(shape.iter().product(), 100 * k);
            host.push((v.clone(), *shape));
            // The second input as a transposed view of its transpose: not contiguous.
            let t = if k == 1 {
                let [a, b, c] = *shape;
                let mut transposed = vec![0.0f32; v.len()];
                for (i, x) in v.iter().enumerate() {
                    let (o, j, l) = (i / (b * c), i / c % b, i % c);
                    transposed[o * b * c + l * b + j] = *x;
                }
                Tensor::<B, 1>::from_floats(transposed.as_slice(), &device)
                    .reshape([a, c, b])
                    .swap_dims(1, 2)
            } else if k == 2 {
                // The third as a column range of a wider tensor: rows of `c` with
                // gaps between them, at an offset (read where it lies on flex).
                let [a, b, c] = *shape;
                let mut wide = vec![-1.0f32; a * b * (c + 3)];
                for (i, x) in v.iter().enumerate() {
                    wide[i / c * (c + 3) + 1 + i % c] = *x;
                }
                Tensor::<B, 1>::from_floats(wide.as_slice(), &device)
                    .reshape([a, b, c + 3])
                    .slice([0..a, 0..b, 1..1 + c])
            } else {
                Tensor::<B, 1>::from_floats(v.as_slice(), &device).reshape(*shape)
            };
            tensors.push(t);
        }
        let got = Tensor::cat(tensors, dim)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        // The expected layout: for each index before `dim`, each input's block.
        let outer: usize = shapes[0][..dim].iter().product();
        let mut want = Vec::new();
        for o in 0..outer {
            for (v, shape) in &host {
                let block: usize = shape[dim..].iter().product();
                want.extend_from_slice(&v[o * block..(o + 1) * block]);
            }
        }
        assert_eq!(got, want, "cat of {shapes:?} along {dim}");
    }
}

/// erf in f64 from its Maclaurin series, for |z| <= 3 (about 1e-12 there).
fn erf_series(z: f64) -> f64 {
    let (mut term, mut sum) = (z, z);
    for n in 1..80 {
        term *= -z * z / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn gelu_and_its_gradient_match_the_exact_formula() {
    // GELU's f32 kernels evaluate erf with PyTorch's CPU polynomial (|error| <=
    // 1.5e-7) and a branch-free exp; both checked here against f64 over [-4, 4], a
    // tensor large enough to be split over threads.
    check_gelu::<realsyn_model::backend::CpuAutodiff>(3e-7);
}

/// The CubeCL backend's GELU kernels (third_party/burn-cubecl, what `--features
/// cuda` runs; here through Vulkan, on lavapipe without a GPU): the exact GELU and
/// its derivative, where Burn's default backward was the tanh approximation's.
/// CubeCL's own erf is a coarser polynomial than flex's.
#[cfg(feature = "wgpu")]
#[test]
fn gelu_and_its_gradient_match_the_exact_formula_on_cubecl() {
    check_gelu::<burn::backend::Autodiff<realsyn_model::backend::Wgpu>>(2e-6);
}

fn check_gelu<AB: burn::tensor::backend::AutodiffBackend>(tolerance: f64) {
    let exact = |x: f64| {
        let cdf = 0.5 * (1.0 + erf_series(x / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        (x * cdf, cdf + x * pdf)
    };
    check_activation::<AB>(
        "gelu",
        burn::tensor::activation::gelu,
        4.0,
        exact,
        tolerance,
    );
}

/// `f` and its gradient at 200,001 points over [-range, range] against `exact(x)` =
/// (f(x), f'(x)) in f64, within `tolerance` times max(|x|, 1): a tensor large enough
/// to be split over threads.
fn check_activation<AB: burn::tensor::backend::AutodiffBackend>(
    name: &str,
    f: fn(Tensor<AB, 1>) -> Tensor<AB, 1>,
    range: f32,
    exact: impl Fn(f64) -> (f64, f64),
    tolerance: f64,
) {
    let n = 200_001;
    let xs: Vec<f32> = (0..n)
        .map(|i| -range + 2.0 * range * i as f32 / (n - 1) as f32)
        .collect();
    let x = Tensor::<AB, 1>::from_floats(xs.as_slice(), &Default::default()).require_grad();
    let y = f(x.clone());
    let forward = y.clone().into_data().to_vec::<f32>().unwrap();
    let grads = y.sum().backward();
    let slope = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
    for (i, &v) in xs.iter().enumerate() {
        let (want, want_slope) = exact(v as f64);
        let tolerance = tolerance * (v as f64).abs().max(1.0);
        assert!(
            (forward[i] as f64 - want).abs() <= tolerance,
            "{name}({v}) = {}, exact {want}",
            forward[i]
        );
        assert!(
            (slope[i] as f64 - want_slope).abs() <= tolerance,
            "{name}'({v}) = {}, exact {want_slope}",
            slope[i]
        );
    }
}

/// SiLU, `x sigmoid(x)` (EVA02's SwiGLU), and its gradient against f64 over
/// [-20, 20], the sigmoid saturated at both ends: on the CPU backend, and on CubeCL,
/// whose sigmoid and its backward are one kernel each (third_party/burn-cubecl), where
/// Burn's defaults were `exp(-log(1 + exp(-x)))` step by step and three kernels back.
#[test]
fn silu_and_its_gradient_match_the_formula() {
    check_silu::<realsyn_model::backend::CpuAutodiff>(1e-6);
}

#[cfg(feature = "wgpu")]
#[test]
fn silu_and_its_gradient_match_the_formula_on_cubecl() {
    check_silu::<burn::backend::Autodiff<realsyn_model::backend::Wgpu>>(1e-6);
}

fn check_silu<AB: burn::tensor::backend::AutodiffBackend>(tolerance: f64) {
    let exact = |x: f64| {
        let s = 1.0 / (1.0 + (-x).exp());
        (x * s, s + x * s * (1.0 - s))
    };
    check_activation::<AB>(
        "silu",
        burn::tensor::activation::silu,
        20.0,
        exact,
        tolerance,
    );
}

#[test]
fn gelu_loops_at_the_cpus_vector_width_give_the_scalar_formulas_bits() {
    // burn-flex's element loops are compiled per x86-64 vector level and the widest
    // this CPU has runs (AVX-512 on the CI machines). Rust never fuses a multiply and
    // an add on its own, so every width must give each element exactly what the
    // scalar expression gives: in place, into a new buffer, and in the backward pass.
    use burn::tensor::activation::gelu;
    use burn_flex::ops::unary::{erf_poly_f32, exp_poly_f32};
    use realsyn_model::backend::CpuAutodiff;
    let n = 100_003; // two chunks and a tail that is not a whole vector
    let xs: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % n) as f32 / n as f32 * 10.0 - 5.0)
        .collect();
    let ws: Vec<f32> = (0..n).map(|i| ((i % 13) as f32 - 6.0) * 0.37).collect();
    let sqrt2 = std::f32::consts::SQRT_2;
    let inv_sqrt_2pi = 1.0 / (2.0 * std::f32::consts::PI).sqrt();
    let cdf = |x: f32| 0.5 * (1.0 + erf_poly_f32(x / sqrt2));
    let forward: Vec<f32> = xs
        .iter()
        .map(|&x| 0.5 * x * (1.0 + erf_poly_f32(x / sqrt2)))
        .collect();
    let slope: Vec<f32> = xs
        .iter()
        .zip(&ws)
        .map(|(&x, &g)| g * (cdf(x) + x * (inv_sqrt_2pi * exp_poly_f32(-0.5 * x * x))))
        .collect();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();

    let x = Tensor::<Cpu, 1>::from_floats(xs.as_slice(), &Default::default());
    let shared = gelu(x.clone()); // `x` is still held: a new buffer
    assert_eq!(
        bits(&values(shared)),
        bits(&forward),
        "gelu into a new buffer"
    );
    let in_place = gelu(x * 1.0); // a unique tensor: mapped where it lies
    assert_eq!(bits(&values(in_place)), bits(&forward), "gelu in place");

    let x =
        Tensor::<CpuAutodiff, 1>::from_floats(xs.as_slice(), &Default::default()).require_grad();
    let w = Tensor::<CpuAutodiff, 1>::from_floats(ws.as_slice(), &Default::default());
    let grads = (gelu(x.clone()) * w).sum().backward();
    let got = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
    assert_eq!(bits(&got), bits(&slope), "gelu's backward");
}

#[test]
fn sigmoid_matches_the_exact_formula_over_its_range() {
    // f32 sigmoid (SiLU in EVA02's SwiGLU, QuickGELU) goes through the vectorised
    // polynomial exp: relative error near f32's epsilon, saturating to exactly 1 far
    // right and to (near) 0 far left, never NaN.
    use burn::tensor::activation::sigmoid;
    let n = 200_001;
    let xs: Vec<f32> = (0..n)
        .map(|i| -120.0 + 240.0 * i as f32 / (n - 1) as f32)
        .collect();
    let x = Tensor::<Cpu, 1>::from_floats(xs.as_slice(), &Default::default());
    let got = values(sigmoid(x));
    for (&v, &y) in xs.iter().zip(&got) {
        let want = 1.0 / (1.0 + (-(v as f64)).exp());
        let error = (y as f64 - want).abs();
        // Below ~-85 the value nears f32's smallest normal number (1.2e-38).
        let tolerance = if v > -85.0 { 4e-7 * want } else { 2e-38 };
        assert!(error <= tolerance, "sigmoid({v}) = {y}, exact {want}");
    }
}

/// Layer norm forward and the three gradients of `sum(w * y)` in f64 (two-pass
/// statistics), rows of `d` values.
fn layer_norm_reference(
    x: &[f32],
    gamma: &[f32],
    w: &[f32],
    d: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let (mut dgamma, mut dbeta) = (vec![0.0; d], vec![0.0; d]);
    for (r, row) in x.chunks(d).enumerate() {
        let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        let x_hat: Vec<f64> = row.iter().map(|v| (v - mean) * rstd).collect();
        let dy = &w[r * d..(r + 1) * d];
        let g: Vec<f64> = (0..d).map(|j| dy[j] as f64 * gamma[j] as f64).collect();
        let mean_g = g.iter().sum::<f64>() / d as f64;
        let mean_gx = (0..d).map(|j| g[j] * x_hat[j]).sum::<f64>() / d as f64;
        for j in 0..d {
            y[r * d + j] = x_hat[j] * gamma[j] as f64;
            dx[r * d + j] = rstd * (g[j] - mean_g - x_hat[j] * mean_gx);
            dgamma[j] += dy[j] as f64 * x_hat[j];
            dbeta[j] += dy[j] as f64;
        }
    }
    (y, dx, dgamma, dbeta)
}

#[test]
fn layer_norm_gradients_match_plain_rust() {
    // Under autodiff layer norm is one node whose backward is the backend's fused
    // kernel (third_party/burn-autodiff, burn-flex PATCHES.md): 150 rows (three
    // blocks of the kernel) of 96, rows with a large mean among them, with and
    // without beta, against f64. The forward (upstream's kernel) takes the variance
    // as E[x^2] - mean^2, which loses digits on rows far from zero.
    check_layer_norm::<realsyn_model::backend::CpuAutodiff>(96, 5e-5);
}

#[test]
fn layer_norm_backward_writes_only_over_buffers_it_owns() {
    // The CPU kernel writes the input's gradient over the gradient so far when it
    // holds that tensor's only handle (adding to it), else over the output's
    // gradient; a tensor someone else still holds must come out unchanged. Every
    // combination of held / not held, against f64, with rows of 100 (not a
    // multiple of the kernel's 16 lanes) in three blocks.
    use burn::tensor::ops::ModuleOps;
    let (rows, d) = (150usize, 100usize);
    let data = |seed: usize| -> Vec<f32> {
        (0..rows * d)
            .map(|i| {
                let v = ((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0 - 2.0;
                // Every seventh row far from zero, as after a residual add.
                if (seed + i / d) % 7 == 0 { v + 40.0 } else { v }
            })
            .collect()
    };
    let (x, w, so_far) = (data(1), data(2), data(3));
    let gamma: Vec<f32> = (0..d).map(|j| 0.5 + (j as f32 * 0.37).sin()).collect();
    let (_, dx_want, dgamma_want, dbeta_want) = layer_norm_reference(&x, &gamma, &w, d, 1e-5);
    let close = |got: &[f32], want: &[f64], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    };
    for with_so_far in [false, true] {
        for keep_so_far in [false, true] {
            for keep_grad in [false, true] {
                if keep_so_far && !with_so_far {
                    continue;
                }
                let case =
                    format!("so far {with_so_far} (held {keep_so_far}), grad held {keep_grad}");
                let grad = cpu_tensor(&w, [rows, d]);
                let so_far_t = cpu_tensor(&so_far, [rows, d]);
                let kept_grad = keep_grad.then(|| grad.clone());
                let kept_so_far = keep_so_far.then(|| so_far_t.clone());
                let out = Cpu::layer_norm_backward(
                    cpu_tensor(&x, [rows, d]).into_primitive().tensor(),
                    cpu_tensor(&gamma, [d]).into_primitive().tensor(),
                    1e-5,
                    grad.into_primitive().tensor(),
                    with_so_far.then(|| so_far_t.into_primitive().tensor()),
                );
                let want: Vec<f64> = if with_so_far {
                    dx_want
                        .iter()
                        .zip(&so_far)
                        .map(|(g, &s)| g + s as f64)
                        .collect()
                } else {
                    dx_want.clone()
                };
                close(
                    &flex_values::<2>(out.x_grad),
                    &want,
                    &format!("x_grad, {case}"),
                );
                close(
                    &flex_values::<1>(out.gamma_grad),
                    &dgamma_want,
                    &format!("gamma_grad, {case}"),
                );
                close(
                    &flex_values::<1>(out.beta_grad),
                    &dbeta_want,
                    &format!("beta_grad, {case}"),
                );
                if let Some(kept) = kept_grad {
                    assert_eq!(values(kept), w, "grad overwritten, {case}");
                }
                if let Some(kept) = kept_so_far {
                    assert_eq!(values(kept), so_far, "so far overwritten, {case}");
                }
            }
        }
    }
}

/// The same on Burn's CubeCL backend (what `--features cuda` runs), here through
/// Vulkan (`--features wgpu`; on a machine without a GPU, Mesa's lavapipe):
/// the layer norm kernels of third_party/burn-cubecl, one plane per row, with a
/// width that is not a multiple of the plane and rows that do not fill the last
/// cube. `cargo test -p realsyn-model --features wgpu --test cpu_backend layer_norm`
#[cfg(feature = "wgpu")]
#[test]
fn layer_norm_gradients_match_plain_rust_on_cubecl() {
    // Two-pass statistics in the forward too.
    check_layer_norm::<burn::backend::Autodiff<realsyn_model::backend::Wgpu>>(100, 1e-5);
}

fn check_layer_norm<AB: burn::tensor::backend::AutodiffBackend>(d: usize, y_tolerance: f64) {
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    let (b, n) = (3usize, 50usize);
    let x: Vec<f32> = heads_input(1, 1, b * n, d, 7)
        .iter()
        .enumerate()
        .map(|(i, v)| if (i / d) % 7 == 0 { v + 40.0 } else { *v })
        .collect();
    let gamma: Vec<f32> = (0..d).map(|j| 0.5 + (j as f32 * 0.37).sin()).collect();
    let beta: Vec<f32> = (0..d).map(|j| (j as f32 * 0.11).cos()).collect();
    let w: Vec<f32> = heads_input(1, 1, b * n, d, 11);
    let device = Default::default();
    let (y_want, dx_want, dgamma_want, dbeta_want) = layer_norm_reference(&x, &gamma, &w, d, 1e-5);
    // A skip path as in a residual block, `sum(v * x)` beside `sum(w * y)`, so the
    // input's gradient is layer norm's plus `v`: made after the layer norm, its
    // gradient is there first and the layer norm's backward adds into it (the
    // towers' case); made before, its gradient is added after.
    let v: Vec<f32> = heads_input(1, 1, b * n, d, 13);
    #[derive(Debug, PartialEq)]
    enum Skip {
        None,
        After,
        Before,
    }
    for (bias, skip) in [
        (true, Skip::None),
        (false, Skip::None),
        (true, Skip::After),
        (false, Skip::Before),
    ] {
        let mut ln = LayerNormConfig::new(d).with_bias(bias).init::<AB>(&device);
        let vector = |v: &[f32]| Tensor::<AB, 1>::from_floats(v, &device).require_grad();
        ln.gamma = Param::from_tensor(vector(&gamma));
        ln.beta = bias.then(|| Param::from_tensor(vector(&beta)));
        let input = Tensor::<AB, 1>::from_floats(x.as_slice(), &device)
            .reshape([b, n, d])
            .require_grad();
        let weights = Tensor::<AB, 1>::from_floats(w.as_slice(), &device).reshape([b, n, d]);
        let skip_weights = Tensor::<AB, 1>::from_floats(v.as_slice(), &device).reshape([b, n, d]);
        let skip_loss = || (input.clone() * skip_weights.clone()).sum();
        let before = (skip == Skip::Before).then(skip_loss);
        let y = ln.forward(input.clone());
        let mut loss = (y.clone() * weights).sum();
        if let Some(before) = before {
            loss = before + loss;
        }
        if skip == Skip::After {
            loss = loss + skip_loss();
        }
        let grads = loss.backward();
        let host = |t: Tensor<AB::InnerBackend, 1>| t.into_data().to_vec::<f32>().unwrap();
        let y_got = host(y.inner().reshape([b * n * d]));
        let dx_got = host(input.grad(&grads).unwrap().reshape([b * n * d]));
        let dgamma_got = host(ln.gamma.val().grad(&grads).unwrap());
        let check = |got: &[f32], want: &[f64], what: &str| {
            let tolerance = if what == "y" { y_tolerance } else { 1e-5 };
            for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= tolerance * w.abs().max(1.0),
                    "{what}[{i}] (beta {bias}, skip {skip:?}): {g} vs {w}"
                );
            }
        };
        let shift: Vec<f64> = (0..b * n * d)
            .map(|i| if bias { beta[i % d] as f64 } else { 0.0 })
            .collect();
        let y_want: Vec<f64> = y_want.iter().zip(&shift).map(|(y, s)| y + s).collect();
        let dx_want: Vec<f64> = dx_want
            .iter()
            .zip(&v)
            .map(|(dx, &v)| {
                if skip == Skip::None {
                    *dx
                } else {
                    dx + v as f64
                }
            })
            .collect();
        check(&y_got, &y_want, "y");
        check(&dx_got, &dx_want, "x grad");
        check(&dgamma_got, &dgamma_want, "gamma grad");
        if let Some(beta) = &ln.beta {
            check(
                &host(beta.val().grad(&grads).unwrap()),
                &dbeta_want,
                "beta grad",
            );
        }
    }
}

#[test]
fn many_tensors_are_placed_into_one_buffer() {
    check_place::<Cpu>();
}

#[cfg(feature = "wgpu")]
#[test]
fn many_tensors_are_placed_into_one_buffer_on_cubecl() {
    check_place::<realsyn_model::backend::Wgpu>();
}

/// `float_place` (the third_party/burn-backend op the training step packs its
/// gradients with; one kernel per 8 parts on CubeCL): 70 parts of odd lengths,
/// every tenth longer than one cube's 1,024 elements, so nine launches, at offsets
/// with gaps, against the same layout written in Rust.
fn check_place<B: burn::tensor::backend::Backend>() {
    use burn::tensor::{FloatDType, TensorPrimitive};
    let device = Default::default();
    let lens: Vec<usize> = (0..70)
        .map(|i| {
            if i % 10 == 3 {
                2_049 + 997 * i
            } else {
                1 + (i * 37) % 300
            }
        })
        .collect();
    let mut offsets = Vec::new();
    let mut end = 0;
    for (i, len) in lens.iter().enumerate() {
        let off = end + i % 3; // gaps of 0, 1 and 2
        offsets.push(off);
        end = off + len;
    }
    let len = end + 5;
    let mut want = vec![0.0f32; len];
    let mut parts = Vec::new();
    for (i, (&off, &n)) in offsets.iter().zip(&lens).enumerate() {
        let values: Vec<f32> = (0..n).map(|j| (i * 1000 + j) as f32 + 0.5).collect();
        want[off..off + n].copy_from_slice(&values);
        let part = Tensor::<B, 1>::from_floats(values.as_slice(), &device);
        parts.push(part.into_primitive().tensor());
    }
    let placed = B::float_place(parts, &offsets, len, FloatDType::F32);
    let got = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(placed));
    assert_eq!(got.into_data().to_vec::<f32>().unwrap(), want);
}

/// A linear layer's bias with the exact GELU or the residual addition after it, and a
/// SwiGLU's packed input product with its bias and gated SiLU, as one op each
/// (`ModuleOps::bias_gelu`, `bias_residual`, `bias_swiglu`: third_party/burn-backend,
/// the kernels in burn-flex and burn-cubecl, the nodes in burn-autodiff): values and
/// the gradients of the product, the bias and the residual against the same sums
/// written as tensor ops (and SwiGLU's against the trait's default decomposition).
/// Rows outnumber the bias's length and every bias element differs, so a bias read by
/// the row rather than the column, a half read at the other's column, or a gradient
/// summed over the wrong dimension, fails. On flex the same formulas in the same
/// order: the same bits.
#[test]
fn bias_ops_match_the_decomposed_ops() {
    check_bias_ops::<CpuAutodiff>(0.0);
}

#[test]
fn bias_ops_write_only_over_buffers_they_own() {
    // `bias_residual` and `bias_gelu_backward` write their result over the last
    // operand (the residual, the incoming gradient) when they hold its only handle,
    // else into a new buffer: the same bits either way, and a held operand unchanged.
    use burn::tensor::ops::ModuleOps;
    let (rows, d) = (3000usize, 48usize);
    let data = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    };
    let (x, bias, last) = (data(rows * d, 1), data(d, 2), data(rows * d, 3));
    type Op = fn(
        burn_flex::FlexTensor,
        burn_flex::FlexTensor,
        burn_flex::FlexTensor,
    ) -> burn_flex::FlexTensor;
    let ops: [(&str, Op); 2] = [
        ("bias_residual", Cpu::bias_residual),
        ("bias_gelu_backward", Cpu::bias_gelu_backward),
    ];
    for (name, op) in ops {
        let mut results = Vec::new();
        for held in [false, true] {
            let last_t = cpu_tensor(&last, [rows, d]);
            let kept = held.then(|| last_t.clone());
            let out = op(
                cpu_tensor(&x, [rows, d]).into_primitive().tensor(),
                cpu_tensor(&bias, [d]).into_primitive().tensor(),
                last_t.into_primitive().tensor(),
            );
            results.push(flex_values::<2>(out));
            if let Some(kept) = kept {
                assert_eq!(values(kept), last, "{name}: a held operand was overwritten");
            }
        }
        assert_eq!(
            results[0], results[1],
            "{name}: in place and into a new buffer differ"
        );
        let want: Vec<f32> = (0..rows * d)
            .map(|i| {
                let (v, b, l) = (x[i], bias[i % d], last[i]);
                match name {
                    "bias_residual" => (v + b) + l,
                    _ => l * gelu_derivative_exact(v + b),
                }
            })
            .collect();
        for (i, (g, w)) in results[0].iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{name}[{i}]: {g} against {w}"
            );
        }
    }
}

/// The exact GELU's derivative, in f64 for the reference (|x| <= 4).
fn gelu_derivative_exact(x: f32) -> f32 {
    let x = x as f64;
    let cdf = 0.5 * (1.0 + erf_series(x / std::f64::consts::SQRT_2));
    let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    (cdf + x * pdf) as f32
}

#[cfg(feature = "wgpu")]
#[test]
fn bias_ops_match_the_decomposed_ops_on_cubecl() {
    check_bias_ops::<burn::backend::Autodiff<realsyn_model::backend::Wgpu>>(1e-5);
}

fn check_bias_ops<AB: burn::tensor::backend::AutodiffBackend>(tolerance: f32) {
    use burn::tensor::activation::gelu;
    use burn::tensor::{TensorData, TensorPrimitive};
    type Grads<AB> = <AB as burn::tensor::backend::AutodiffBackend>::Gradients;
    let device = Default::default();
    // 3,000 x 48: over two of flex's chunks, so split over threads (the SwiGLU's
    // output, half as wide, too).
    let (rows, d) = (3000, 48);
    let h = d / 2;
    let data = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    };
    let leaf2 = |seed| {
        Tensor::<AB, 2>::from_data(TensorData::new(data(rows * d, seed), [rows, d]), &device)
            .require_grad()
    };
    let leaf1 = |seed| {
        Tensor::<AB, 1>::from_data(TensorData::new(data(d, seed), [d]), &device).require_grad()
    };
    let weights =
        Tensor::<AB, 2>::from_data(TensorData::new(data(rows * d, 7), [rows, d]), &device);
    let vec = |t: Tensor<AB, 2>| t.into_data().to_vec::<f32>().unwrap();
    let grad2 =
        |t: &Tensor<AB, 2>, g: &Grads<AB>| t.grad(g).unwrap().into_data().to_vec::<f32>().unwrap();
    let grad1 =
        |t: &Tensor<AB, 1>, g: &Grads<AB>| t.grad(g).unwrap().into_data().to_vec::<f32>().unwrap();
    let close = |got: &[f32], want: &[f32], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let bound = tolerance * w.abs().max(1.0);
            assert!((g - w).abs() <= bound, "{what}[{i}]: {g} against {w}");
        }
    };

    // gelu(x + bias)
    let (x, bias, x_ref, bias_ref) = (leaf2(1), leaf1(2), leaf2(1), leaf1(2));
    let fused = Tensor::<AB, 2>::from_primitive(TensorPrimitive::Float(AB::bias_gelu(
        x.clone().into_primitive().tensor(),
        bias.clone().into_primitive().tensor(),
    )));
    let reference = gelu(x_ref.clone() + bias_ref.clone().unsqueeze::<2>());
    let grads = (fused.clone() * weights.clone()).sum().backward();
    let grads_ref = (reference.clone() * weights.clone()).sum().backward();
    close(&vec(fused), &vec(reference), "bias_gelu");
    let (gx, gb) = (grad2(&x, &grads), grad1(&bias, &grads));
    close(&gx, &grad2(&x_ref, &grads_ref), "bias_gelu: x's gradient");
    close(&gb, &grad1(&bias_ref, &grads_ref), "bias_gelu: the bias's");
    // The bias's gradient is the column sums of x's.
    for (j, g) in gb.iter().enumerate() {
        let column: f32 = gx.iter().skip(j).step_by(d).sum();
        let bound = 1e-3 * column.abs().max(1.0);
        assert!(
            (g - column).abs() <= bound,
            "bias grad [{j}]: {g} against {column}"
        );
    }

    // x + bias + residual
    let (x, bias, residual) = (leaf2(3), leaf1(4), leaf2(5));
    let (x_ref, bias_ref, residual_ref) = (leaf2(3), leaf1(4), leaf2(5));
    let fused = Tensor::<AB, 2>::from_primitive(TensorPrimitive::Float(AB::bias_residual(
        x.clone().into_primitive().tensor(),
        bias.clone().into_primitive().tensor(),
        residual.clone().into_primitive().tensor(),
    )));
    let reference = residual_ref.clone() + (x_ref.clone() + bias_ref.clone().unsqueeze::<2>());
    let grads = (fused.clone() * weights.clone()).sum().backward();
    let grads_ref = (reference.clone() * weights.clone()).sum().backward();
    close(&vec(fused), &vec(reference), "bias_residual");
    let x_grad = grad2(&x, &grads);
    close(
        &x_grad,
        &grad2(&x_ref, &grads_ref),
        "bias_residual: x's gradient",
    );
    let residual_grad = grad2(&residual, &grads);
    let residual_want = grad2(&residual_ref, &grads_ref);
    close(
        &residual_grad,
        &residual_want,
        "bias_residual: the residual's",
    );
    let bias_grad = grad1(&bias, &grads);
    close(
        &bias_grad,
        &grad1(&bias_ref, &grads_ref),
        "bias_residual: the bias's",
    );

    // silu(g) * u with [g, u] = packed + bias, EVA02's SwiGLU: the packed product's
    // halves are the gate's columns and the other's.
    let (packed, bias, packed_ref, bias_ref) = (leaf2(6), leaf1(7), leaf2(6), leaf1(7));
    let fused = Tensor::<AB, 2>::from_primitive(TensorPrimitive::Float(AB::bias_swiglu(
        packed.clone().into_primitive().tensor(),
        bias.clone().into_primitive().tensor(),
    )));
    let summed = packed_ref.clone() + bias_ref.clone().unsqueeze::<2>();
    let (gate, x) = (
        summed.clone().slice([0..rows, 0..h]),
        summed.slice([0..rows, h..d]),
    );
    let reference = burn::tensor::activation::silu(gate) * x;
    let half_weights = weights.slice([0..rows, 0..h]);
    let grads = (fused.clone() * half_weights.clone()).sum().backward();
    let grads_ref = (reference.clone() * half_weights.clone()).sum().backward();
    let (y, packed_grad) = (vec(fused), grad2(&packed, &grads));
    close(&y, &vec(reference), "bias_swiglu");
    let what = "bias_swiglu: the packed product's gradient";
    close(&packed_grad, &grad2(&packed_ref, &grads_ref), what);
    let what = "bias_swiglu: the bias's gradient";
    close(&grad1(&bias, &grads), &grad1(&bias_ref, &grads_ref), what);

    // The trait's default decomposition (what backends without the kernels run), on
    // the inner backend: the same values.
    {
        use burn::tensor::ops::linear::{
            bias_swiglu_backward_from_float_ops, bias_swiglu_from_float_ops,
        };
        type Inner<AB> = <AB as burn::tensor::backend::AutodiffBackend>::InnerBackend;
        let (p, b) = (packed.inner().into_primitive().tensor(), bias.inner());
        let b = b.into_primitive().tensor();
        let plain = |t| {
            let t = Tensor::<Inner<AB>, 2>::from_primitive(TensorPrimitive::Float(t));
            t.into_data().to_vec::<f32>().unwrap()
        };
        let default_y = bias_swiglu_from_float_ops::<Inner<AB>>(p.clone(), b.clone());
        close(&plain(default_y), &y, "default bias_swiglu");
        let dy = half_weights.inner().into_primitive().tensor();
        let default_grad = bias_swiglu_backward_from_float_ops::<Inner<AB>>(p, b, dy);
        close(
            &plain(default_grad),
            &packed_grad,
            "default bias_swiglu_backward",
        );
    }
}

/// A rotary embedding's rotation as one op (`ModuleOps::rotary`, `rotary_backward`:
/// third_party/burn-backend, the kernels in burn-flex and burn-cubecl, the node in
/// burn-autodiff), both pair layouts, against the definition per element in f64:
/// `y[c] = x[c] cos[c] + x[p] sin[c]` (`p` the pair's other channel, the sin signed)
/// and, for `sum(y * w)`, `dx[c] = w[c] cos[c] + w[p] sin[p]`. The tables are not
/// sines (any values), so a channel read from the wrong partner or a table read at
/// the wrong channel fails; `x` is a transposed view (as Llama's heads are) over two
/// of flex's chunks. The trait's default decomposition is checked the same way.
#[test]
fn rotary_and_its_gradient_match_the_definition() {
    check_rotary::<CpuAutodiff>(1e-6);
}

#[cfg(feature = "wgpu")]
#[test]
fn rotary_and_its_gradient_match_the_definition_on_cubecl() {
    check_rotary::<burn::backend::Autodiff<realsyn_model::backend::Wgpu>>(1e-5);
}

fn check_rotary<AB: burn::tensor::backend::AutodiffBackend>(tolerance: f64) {
    use burn::tensor::TensorData;
    use burn::tensor::TensorPrimitive;
    use burn::tensor::ops::RotaryPairs;
    use burn::tensor::ops::rotary::{rotary_backward_from_float_ops, rotary_from_float_ops};
    type Inner<AB> = <AB as burn::tensor::backend::AutodiffBackend>::InnerBackend;
    let device = Default::default();
    let (b, h, n, d) = (2, 4, 130, 64);
    let data = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    };
    let (xs, ws, cos, sin) = (
        data(b * h * n * d, 1),
        data(b * h * n * d, 2),
        data(n * d, 3),
        data(n * d, 4),
    );
    let close = |got: &[f32], want: &[f64], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let bound = tolerance * w.abs().max(1.0);
            assert!(
                (*g as f64 - w).abs() <= bound,
                "{what}[{i}]: {g} against {w}"
            );
        }
    };
    for pairs in [RotaryPairs::Interleaved, RotaryPairs::Halves] {
        let partner = |c: usize| match pairs {
            RotaryPairs::Interleaved => c ^ 1,
            RotaryPairs::Halves => (c + d / 2) % d,
        };
        // Row-major [b, h, n, d] references.
        let (mut y_want, mut dx_want) = (vec![0f64; xs.len()], vec![0f64; xs.len()]);
        for row in 0..b * h * n {
            let t = row % n;
            for c in 0..d {
                let (at, p) = (row * d + c, row * d + partner(c));
                let (tc, tp) = (t * d + c, t * d + partner(c));
                y_want[at] = xs[at] as f64 * cos[tc] as f64 + xs[p] as f64 * sin[tc] as f64;
                dx_want[at] = ws[at] as f64 * cos[tc] as f64 + ws[p] as f64 * sin[tp] as f64;
            }
        }
        // x as [b, n, h, d] swapped to [b, h, n, d]: a strided view.
        let mut x_bnhd = vec![0f32; xs.len()];
        for (i, v) in xs.iter().enumerate() {
            let (c, t, hh, bb) = (i % d, (i / d) % n, (i / (d * n)) % h, i / (d * n * h));
            x_bnhd[((bb * n + t) * h + hh) * d + c] = *v;
        }
        let x = Tensor::<AB, 4>::from_data(TensorData::new(x_bnhd, [b, n, h, d]), &device)
            .require_grad();
        let table = |v: &[f32]| {
            Tensor::<AB, 4>::from_data(TensorData::new(v.to_vec(), [1, 1, n, d]), &device)
        };
        let prim = |t: Tensor<AB, 4>| t.into_primitive().tensor();
        let y = Tensor::<AB, 4>::from_primitive(TensorPrimitive::Float(AB::rotary(
            prim(x.clone().swap_dims(1, 2)),
            prim(table(&cos)),
            prim(table(&sin)),
            pairs,
        )));
        let w = Tensor::<AB, 4>::from_data(TensorData::new(ws.clone(), [b, h, n, d]), &device);
        let grads = (y.clone() * w).sum().backward();
        let y_got = y.into_data().to_vec::<f32>().unwrap();
        close(&y_got, &y_want, &format!("{pairs:?} rotary"));
        let dx = x
            .grad(&grads)
            .unwrap()
            .swap_dims(1, 2)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        close(&dx, &dx_want, &format!("{pairs:?} rotary: x's gradient"));

        // The default decomposition, on the inner backend.
        let inner = |v: &[f32], shape: [usize; 4]| {
            Tensor::<Inner<AB>, 4>::from_data(TensorData::new(v.to_vec(), shape), &device)
                .into_primitive()
                .tensor()
        };
        let out = |p| Tensor::<Inner<AB>, 4>::from_primitive(TensorPrimitive::Float(p));
        let y = rotary_from_float_ops::<Inner<AB>>(
            inner(&xs, [b, h, n, d]),
            inner(&cos, [1, 1, n, d]),
            inner(&sin, [1, 1, n, d]),
            pairs,
        );
        let y = out(y).into_data().to_vec::<f32>().unwrap();
        close(&y, &y_want, &format!("{pairs:?} default rotary"));
        let dx = rotary_backward_from_float_ops::<Inner<AB>>(
            inner(&ws, [b, h, n, d]),
            inner(&cos, [1, 1, n, d]),
            inner(&sin, [1, 1, n, d]),
            pairs,
        );
        let dx = out(dx).into_data().to_vec::<f32>().unwrap();
        close(&dx, &dx_want, &format!("{pairs:?} default rotary backward"));
    }
}
