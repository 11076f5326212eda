//! Gradient accumulation keeps the contrastive loss exact: the same batch in 1, 2
//! or 4 micro-batches gives the same loss and the same gradients.

use burn::tensor::{Distribution, Int, Tensor};
use realsyn_model::backend::CpuAutodiff as B;
use realsyn_model::{Clip, ClipConfig};
use realsyn_train::optim::track_gradients;
use realsyn_train::step::forward_backward;

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
        assert_eq!(parts.grads.grads.len(), whole.grads.grads.len());
        for (k, g) in &whole.grads.grads {
            let a: Vec<f32> = g.clone().into_data().into_vec().unwrap();
            let b: Vec<f32> = parts.grads.grads[k].clone().into_data().into_vec().unwrap();
            let (d, m) = a.iter().zip(&b).fold((0f64, 0f64), |(d, m), (x, y)| {
                (d + ((x - y) as f64).powi(2), m + (*x as f64).powi(2))
            });
            let rel = (d / m.max(1e-30)).sqrt();
            assert!(
                rel < 1e-4,
                "accum {accum}, {k}: relative gradient difference {rel:e}"
            );
        }
    }
    assert!(
        forward_backward(&model, images, tokens, 3).is_err(),
        "8 does not split into 3"
    );
}
