//! `REALSYN_MATMUL` (third_party/burn-cubecl/PATCHES.md) picks the CubeCL backends'
//! matrix-product kernel family at run time. A family other than the default gives
//! the CPU backend's products in the three layouts a training step has: the forward
//! `x W`, a weight's gradient `x^T dY` (the left operand a transposed view) and the
//! input's gradient `dY W^T`. A test binary of its own: the variables are read once
//! per process. Needs `--features wgpu` (lavapipe on a machine without a GPU).
#![cfg(feature = "wgpu")]

use burn::tensor::{Distribution, Tensor, TensorData};
use realsyn_model::backend::{Cpu, Wgpu};

#[test]
fn a_named_matmul_family_computes_the_cpu_backends_products() {
    // The unit kernel with double buffering: lavapipe has no tensor cores, so the
    // default there is the single-buffered unit kernel, and this one differs from it.
    // SAFETY: the only test of this binary, before any thread reads the environment.
    // Strict: a family that cannot run panics instead of leaving the product to the
    // default kernel, which would pass unseen.
    unsafe {
        std::env::set_var("REALSYN_MATMUL", "double_unit");
        std::env::set_var("REALSYN_KERNELS_STRICT", "1");
    }
    let cpu = Default::default();
    let gpu = Default::default();
    let random = |rows: usize, cols: usize| {
        Tensor::<Cpu, 2>::random([rows, cols], Distribution::Uniform(-1.0, 1.0), &cpu)
    };
    let on_gpu = |t: &Tensor<Cpu, 2>| Tensor::<Wgpu, 2>::from_data(t.to_data(), &gpu);
    // Lengths that are not multiples of the kernels' tiles.
    let (m, n, k) = (200, 72, 150);
    for layout in ["nn", "tn", "nt"] {
        let (lhs, rhs) = match layout {
            "tn" => (random(k, m), random(k, n)),
            "nt" => (random(m, k), random(n, k)),
            _ => (random(m, k), random(k, n)),
        };
        let (l, r) = (on_gpu(&lhs), on_gpu(&rhs));
        let (want, got) = match layout {
            "tn" => (lhs.transpose().matmul(rhs), l.transpose().matmul(r)),
            "nt" => (lhs.matmul(rhs.transpose()), l.matmul(r.transpose())),
            _ => (lhs.matmul(rhs), l.matmul(r)),
        };
        let host = |d: TensorData| d.to_vec::<f32>().unwrap();
        let (want, got) = (host(want.into_data()), host(got.into_data()));
        assert_eq!(want.len(), m * n, "{layout}");
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{layout}: largest difference {worst}");
    }
}
