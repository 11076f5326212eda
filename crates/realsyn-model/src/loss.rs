//! CLIP's symmetric InfoNCE loss (open_clip `ClipLoss` on one device):
//! (CE(image -> text) + CE(text -> image)) / 2, the i-th image matching the i-th text.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;

/// `logits_per_image`: [n, n] = scale * img_n @ txt_n^T. Returns a [1] tensor.
pub fn contrastive_loss<B: Backend>(logits_per_image: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = logits_per_image.dims();
    let eye = Tensor::<B, 2>::eye(n, &logits_per_image.device());
    let ce = |logits: Tensor<B, 2>| -> Tensor<B, 1> {
        (log_softmax(logits, 1) * eye.clone())
            .sum()
            .neg()
            .div_scalar(n as f32)
    };
    (ce(logits_per_image.clone()) + ce(logits_per_image.transpose())).div_scalar(2.0)
}
