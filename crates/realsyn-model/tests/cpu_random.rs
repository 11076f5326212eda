//! The CPU backend's random tensors. burn-flex's `float_random` is patched to draw
//! f32 and f64 in parallel blocks, one seed per block drawn from the backend's RNG
//! (third_party/burn-flex/PATCHES.md): a seeded draw must repeat, must not depend on
//! how many threads drew it, its blocks must be different streams, and its values
//! must follow the distribution asked for. One test in its own process, because
//! `Backend::seed` is process-wide and any other test's random tensor would take it.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{Distribution, FloatDType, Tensor, TensorPrimitive};
use realsyn_model::backend::Cpu;

/// Elements per seed in the patched `float_random`.
const BLOCK: usize = 1 << 14;

/// One tensor of `n` elements drawn after seeding with `seed`, on a pool of `threads`.
fn draw(seed: u64, threads: usize, n: usize, dist: Distribution, dtype: FloatDType) -> Vec<f64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let device = Default::default();
        Cpu::seed(&device, seed);
        let t = Cpu::float_random([n].into(), dist, &device, dtype);
        let data = Tensor::<Cpu, 1>::from_primitive(TensorPrimitive::Float(t)).into_data();
        match dtype {
            FloatDType::F64 => data.to_vec::<f64>().unwrap(),
            _ => data.iter::<f32>().map(f64::from).collect(),
        }
    })
}

fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn seeded_random_tensors_repeat_for_any_thread_count_and_follow_their_distribution() {
    // 18 whole blocks and a part, so every thread count splits them differently.
    let n = 18 * BLOCK + 1234;
    let normal = Distribution::Normal(2.0, 3.0);
    for dtype in [FloatDType::F32, FloatDType::F64] {
        let one = draw(7, 1, n, normal, dtype);
        for threads in [2, 3] {
            assert!(
                draw(7, threads, n, normal, dtype) == one,
                "{dtype:?}: seed 7 drew other values on {threads} threads than on one"
            );
        }
        assert!(
            draw(8, 2, n, normal, dtype) != one,
            "seeds 7 and 8 drew the same"
        );
    }

    // The seed's RNG advances: a second tensor after one seed is new numbers.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (first, second) = pool.install(|| {
        let device = Default::default();
        Cpu::seed(&device, 7);
        let a = Tensor::<Cpu, 1>::random([n], normal, &device).into_data();
        let b = Tensor::<Cpu, 1>::random([n], normal, &device).into_data();
        (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap())
    });
    assert_ne!(first, second, "two draws after one seed were equal");

    // Normal(2, 3): mean, standard deviation and the share within one sigma, over
    // 2^20 draws (the mean's own standard error is 0.003).
    let x = draw(11, 2, 1 << 20, normal, FloatDType::F32);
    let (mean, std) = mean_std(&x);
    assert!((mean - 2.0).abs() < 0.02, "normal mean {mean}");
    assert!((std - 3.0).abs() < 0.02, "normal std {std}");
    let within = x.iter().filter(|v| (*v - 2.0).abs() < 3.0).count() as f64 / x.len() as f64;
    assert!(
        (within - 0.6827).abs() < 0.005,
        "share within one sigma {within}"
    );

    // Consecutive blocks are different streams: equal seeds per block would repeat
    // them, correlated ones would show here (the correlation's standard error over
    // one block is 1/128).
    let (a, b) = (&x[..BLOCK], &x[BLOCK..2 * BLOCK]);
    assert_ne!(a, b, "the first two blocks drew the same values");
    let ((ma, sa), (mb, sb)) = (mean_std(a), mean_std(b));
    let cov = a
        .iter()
        .zip(b)
        .map(|(p, q)| (p - ma) * (q - mb))
        .sum::<f64>()
        / BLOCK as f64;
    assert!(
        (cov / (sa * sb)).abs() < 0.05,
        "blocks correlate: {}",
        cov / (sa * sb)
    );

    // Uniform(-1, 5) stays in [-1, 5) with mean 2; the default is [0, 1).
    let u = draw(
        12,
        2,
        1 << 20,
        Distribution::Uniform(-1.0, 5.0),
        FloatDType::F32,
    );
    assert!(
        u.iter().all(|v| (-1.0..5.0).contains(v)),
        "uniform out of range"
    );
    let (mean, std) = mean_std(&u);
    assert!((mean - 2.0).abs() < 0.01, "uniform mean {mean}");
    assert!((std - 6.0 / 12f64.sqrt()).abs() < 0.01, "uniform std {std}");
    let d = draw(13, 2, 1 << 18, Distribution::Default, FloatDType::F64);
    assert!(
        d.iter().all(|v| (0.0..1.0).contains(v)),
        "default out of [0, 1)"
    );
    assert!((mean_std(&d).0 - 0.5).abs() < 0.01, "default mean");
}
