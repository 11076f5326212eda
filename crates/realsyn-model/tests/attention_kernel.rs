//! `REALSYN_ATTENTION` (third_party/burn-cubecl/PATCHES.md) picks the CubeCL backends'
//! attention kernel at run time. cubek's flash kernel (here its unit form: lavapipe
//! has no tensor cores) gives the CPU backend's attention within f16's precision (its
//! tiles are f16), and under autodiff the same gradients, the backward recomputing the
//! weights from q and k in the input's type as before, the output's gradient reaching
//! it as the strided view the heads' merge leaves (as in the towers). A
//! test binary of its own: the variables are read once per process;
//! `REALSYN_KERNELS_STRICT` makes a flash kernel that cannot run panic rather than
//! leave the work to the decomposition, so this fails if the flash kernel did not
//! run. Needs `--features wgpu` (lavapipe on a machine without a GPU).
#![cfg(feature = "wgpu")]

use burn::backend::Autodiff;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, Tensor};
use realsyn_model::backend::{Cpu, Wgpu};

/// `sum(attention(q, k, v) * w)`'s output and the gradients of q, k and v on `B`.
fn run<B: burn::tensor::backend::AutodiffBackend>(
    inputs: &[Tensor<Cpu, 4>; 4],
    causal: bool,
) -> [Vec<f32>; 4] {
    let device = Default::default();
    let on = |t: &Tensor<Cpu, 4>| Tensor::<B, 4>::from_data(t.to_data(), &device);
    let (q, k, v) = (
        on(&inputs[0]).require_grad(),
        on(&inputs[1]).require_grad(),
        on(&inputs[2]).require_grad(),
    );
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    // Heads merged as the towers merge them (`[b, n, h * d]`), so the output's
    // gradient reaches the backward as a strided view, as in training.
    let [b, h, n, d] = inputs[0].dims();
    let out = attention(q.clone(), k.clone(), v.clone(), None, None, options)
        .swap_dims(1, 2)
        .reshape([b, n, h * d]);
    let w = on(&inputs[3]).reshape([b, n, h * d]);
    let grads = (out.clone() * w).sum().backward();
    let host = |t: Tensor<B::InnerBackend, 3>| t.into_data().to_vec::<f32>().unwrap();
    let grad = |t: &Tensor<B, 4>| {
        let g = t.grad(&grads).expect("a gradient");
        g.into_data().to_vec::<f32>().unwrap()
    };
    [host(out.inner()), grad(&q), grad(&k), grad(&v)]
}

#[test]
fn the_flash_kernel_computes_the_cpu_backends_attention_and_gradients() {
    // SAFETY: the only test of this binary, before any thread reads the environment.
    unsafe {
        std::env::set_var("REALSYN_ATTENTION", "flash_unit");
        std::env::set_var("REALSYN_KERNELS_STRICT", "1");
    }
    let cpu = Default::default();
    // The towers' shapes: ViT-B/32's 50 image tokens, the text tower's 77 causal
    // ones (head width 64); and lengths that are no multiple of the kernel's tiles.
    for (b, h, n, d, causal) in [
        (2, 3, 50, 64, false),
        (2, 2, 77, 64, true),
        (1, 2, 37, 32, false),
    ] {
        let random = |scale: f32| {
            Tensor::<Cpu, 4>::random([b, h, n, d], Distribution::Uniform(-1.0, 1.0), &cpu) * scale
        };
        let inputs = [random(0.5), random(0.5), random(1.0), random(1.0)];
        let want = run::<Autodiff<Cpu>>(&inputs, causal);
        let got = run::<Autodiff<Wgpu>>(&inputs, causal);
        for (name, (g, w)) in ["output", "q grad", "k grad", "v grad"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            assert_eq!(g.len(), b * h * n * d, "{name}");
            let worst = g
                .iter()
                .zip(w)
                .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
                .fold(0.0f32, f32::max);
            // cubek's flash kernels multiply in f16 tiles (accumulating in f32), so the
            // output is as close as f16's precision allows (measured: 8e-5 at worst,
            // 2.7e-4 with the causal mask); the gradients come from the backward's exact
            // recomputation (measured: 2.4e-7 at worst).
            let tolerance = if *name == "output" { 1e-3 } else { 2e-6 };
            assert!(
                worst < tolerance,
                "{n} tokens, causal {causal}: {name} differs by {worst}"
            );
        }
    }
}
