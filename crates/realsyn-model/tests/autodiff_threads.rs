//! Backward passes on several threads of one process keep every gradient. Burn's
//! autodiff keeps its graphs in one process-wide locator, and each `backward()`
//! ends by sweeping every graph for nodes no tensor holds any more. Upstream 0.21's
//! concatenation let go of its inputs' reference counts before registering its own
//! step, so a sweep on another thread could free an input's step in that window and
//! a parameter silently lost that path's gradient (tracel-ai/burn#5573; patched in
//! `third_party/burn-autodiff`). CI met it once in the accumulation test: an EVA02
//! class token's gradient 0.5 relative off at four micro-batches while the ViT test
//! ran its backward passes beside it. A class token has exactly this test's shape:
//! reused across backward passes, expanded, then concatenated before the patches.

use burn::tensor::{Distribution, Tensor};
use realsyn_model::backend::CpuAutodiff as B;
use std::sync::atomic::{AtomicBool, Ordering};

/// The window is the concatenation's copy: larger inputs widen it.
const SIZE: usize = 192;

/// One class-token-like step: the leaf has been through a backward pass already (so
/// the locator no longer knows it and its next op starts a one-node graph), then it
/// is expanded and concatenated; its gradient must be the expansion's row count.
fn class_token_round() -> bool {
    let device = &Default::default();
    let token =
        Tensor::<B, 2>::random([1, SIZE], Distribution::Normal(0.0, 1.0), device).require_grad();
    let _ = token.clone().sum().backward();
    let rest = Tensor::<B, 2>::random([SIZE, SIZE], Distribution::Normal(0.0, 1.0), device);
    let expanded = token.clone().expand([4, SIZE]);
    let joined = Tensor::cat(vec![expanded, rest], 0);
    let grads = joined.sum().backward();
    match token.grad(&grads) {
        Some(g) => g
            .into_data()
            .into_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 4.0),
        None => false,
    }
}

#[test]
fn a_backward_pass_on_another_thread_never_drops_a_gradient() {
    let device = Default::default();
    let stop = AtomicBool::new(false);
    let lost = std::thread::scope(|s| {
        // Sweepers: small unrelated backward passes, each ending in the global sweep.
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let w = Tensor::<B, 1>::ones([8], &device).require_grad();
                    let _ = (w.clone() * 2.0).sum().backward();
                }
            });
        }
        let victims: Vec<_> = (0..2)
            .map(|_| s.spawn(|| (0..150).filter(|_| !class_token_round()).count()))
            .collect();
        let lost: usize = victims.into_iter().map(|v| v.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        lost
    });
    assert_eq!(
        lost, 0,
        "{lost} of 300 rounds lost the class token's gradient"
    );
}
