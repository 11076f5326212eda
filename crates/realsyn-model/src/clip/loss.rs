//! CLIP's symmetric InfoNCE loss (open_clip `ClipLoss`):
//! (CE(image -> text) + CE(text -> image)) / 2, the i-th image matching the i-th text.
//! For the global-batch loss the caller passes features gathered from every device
//! and micro-batch.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::ClipOutput;

/// Mean cross-entropy of each row against its diagonal entry.
fn diagonal_ce<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    let idx = Tensor::<B, 1, Int>::arange(0..n as i64, &logits.device()).reshape([n, 1]);
    log_softmax(logits, 1).gather(1, idx).mean().neg()
}

/// `logits_per_image`: [n, n] = scale * img_n @ txt_n^T. Returns a [1] tensor.
pub fn contrastive_loss<B: Backend>(logits_per_image: Tensor<B, 2>) -> Tensor<B, 1> {
    (diagonal_ce(logits_per_image.clone()) + diagonal_ce(logits_per_image.transpose()))
        .div_scalar(2.0)
}

/// The loss from normalised features and `exp(logit_scale)` (shape [1]).
pub fn clip_loss<B: Backend>(
    image_features: Tensor<B, 2>,
    text_features: Tensor<B, 2>,
    logit_scale: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let out = ClipOutput {
        image_features,
        text_features,
        logit_scale,
    };
    contrastive_loss(out.logits_per_image())
}
