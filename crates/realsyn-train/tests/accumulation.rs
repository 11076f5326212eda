//! The global-batch loss stays exact however a step is split: the same batch in 1,
//! 2 or 4 micro-batches, or over 2 replicas (data parallel; here two logical
//! devices on the CPU, exercising the gather, the per-replica gradients and their
//! reduction), gives the same loss and the same gradients.

use burn::tensor::{Distribution, Int, Tensor};
use realsyn_model::backend::CpuAutodiff as B;
use realsyn_model::{Clip, ClipConfig};
use realsyn_train::optim::NamedGrads;
use realsyn_train::optim::track_gradients;
use realsyn_train::step::{DeviceSlice, data_parallel_step, forward_backward, replicate};

fn assert_same(
    label: &str,
    a: &NamedGrads<realsyn_model::backend::Cpu>,
    b: &NamedGrads<realsyn_model::backend::Cpu>,
) {
    assert_eq!(a.grads.len(), b.grads.len(), "{label}");
    for (k, g) in &a.grads {
        let x: Vec<f32> = g.clone().into_data().into_vec().unwrap();
        let y: Vec<f32> = b.grads[k].clone().into_data().into_vec().unwrap();
        let (d, m) = x.iter().zip(&y).fold((0f64, 0f64), |(d, m), (p, q)| {
            (d + ((p - q) as f64).powi(2), m + (*p as f64).powi(2))
        });
        let rel = (d / m.max(1e-30)).sqrt();
        assert!(
            rel < 1e-4,
            "{label}, {k}: relative gradient difference {rel:e}"
        );
    }
}

#[test]
fn micro_batches_give_the_whole_batch_loss_and_gradients() {
    let device = Default::default();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/parity/tiny-gelu.json"
    );
    let config = ClipConfig::from_name_or_path(path).unwrap();
    <B as burn::tensor::backend::Backend>::seed(&device, 3);
    let model = track_gradients(Clip::<B>::new(&config, &device)).unwrap();
    let n = 8;
    let images = Tensor::<B, 4>::random([n, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let mut ids = vec![0i32; n * 77];
    for r in 0..n {
        ids[r * 77] = 998;
        for c in 1..=(3 + r) {
            ids[r * 77 + c] = (7 * r + 13 * c) as i32 % 990 + 1;
        }
        ids[r * 77 + 4 + r] = 999;
    }
    let tokens =
        Tensor::<B, 2, Int>::from_data(burn::tensor::TensorData::new(ids, [n, 77]), &device);

    let whole = forward_backward(&model, images.clone(), tokens.clone(), 1).unwrap();
    for accum in [2, 4] {
        let parts = forward_backward(&model, images.clone(), tokens.clone(), accum).unwrap();
        assert!(
            (parts.loss - whole.loss).abs() < 1e-5,
            "accum {accum}: {} vs {}",
            parts.loss,
            whole.loss
        );
        assert_same(&format!("accum {accum}"), &whole.grads, &parts.grads);
    }
    // Two replicas, each with half the batch, with and without accumulation.
    for accum in [1, 2] {
        let slices = vec![
            DeviceSlice {
                model: model.clone(),
                images: images.clone().slice([0..4]),
                tokens: tokens.clone().slice([0..4]),
            },
            DeviceSlice {
                model: replicate(&model, &device).unwrap(),
                images: images.clone().slice([4..8]),
                tokens: tokens.clone().slice([4..8]),
            },
        ];
        let dp = data_parallel_step(slices, accum).unwrap();
        assert!(
            (dp.loss - whole.loss).abs() < 1e-5,
            "2 replicas, accum {accum}: {} vs {}",
            dp.loss,
            whole.loss
        );
        assert_same(
            &format!("2 replicas, accum {accum}"),
            &whole.grads,
            &dp.grads,
        );
    }
    assert!(
        forward_backward(&model, images, tokens, 3).is_err(),
        "8 does not split into 3"
    );
}
