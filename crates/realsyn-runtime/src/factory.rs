//! A model with everything needed to feed it, from one call (open_clip's
//! `create_model_and_transforms` + `get_tokenizer`): the transforms and the tokenizer
//! are derived from the model's own config, never re-derived by each caller.

use std::path::Path;

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_data::{EvalTransform, RandomResizedCrop};
use realsyn_model::{Clip, ClipTokenizer, DualEncoder};

/// A loaded model and its image transforms; `tokenizer()` gives its text tower's
/// tokenizer (checked when asked for, so an image-only use of a model whose text
/// vocabulary is not CLIP's still loads).
#[derive(Clone)]
pub struct ModelAndTransforms<B: Backend> {
    pub model: Clip<B>,
    /// Training augmentation (open_clip's `RandomResizedCrop(scale=(0.9, 1.0))`).
    pub train_transform: RandomResizedCrop,
    /// Evaluation preprocessing (resize the shorter side, centre crop).
    pub eval_transform: EvalTransform,
}

impl<B: Backend> ModelAndTransforms<B> {
    /// The text tower's tokenizer, checked against its context length and vocabulary.
    pub fn tokenizer(&self) -> Result<ClipTokenizer> {
        self.model.tokenizer()
    }
}

/// Load `weights` (open_clip `.safetensors`/`.pt`/`.bin`, a Hugging Face CLIP folder
/// or a realsyn checkpoint; `arch` names the architecture when the file does not).
pub fn create_model_and_transforms<B: Backend>(
    weights: &Path,
    arch: Option<&str>,
    device: &B::Device,
) -> Result<ModelAndTransforms<B>> {
    let model = Clip::<B>::load(weights, arch, device)?;
    let size = model.image_size() as u32;
    Ok(ModelAndTransforms {
        train_transform: RandomResizedCrop::new(size),
        eval_transform: EvalTransform::new(size),
        model,
    })
}
