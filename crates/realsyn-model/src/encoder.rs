//! The dual-encoder interface: an image tower and a text tower into one embedding
//! space. Evaluation, the trainer's zero-shot hook and the builder's encoders take
//! `DualEncoder` rather than `Clip`, so EVA02-CLIP (and any other such model) plugs in
//! wherever CLIP does. `embed_pixels` / `embed_texts` run one batch through a tower
//! into an `Embeddings` matrix; callers batch with `realsyn_io::encode_in_batches`.

use anyhow::Result;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use realsyn_io::Embeddings;

use crate::clip::l2_normalize;
use crate::clip::tokenizer::ClipTokenizer;
use crate::common::batch::{image_batch, to_rows, token_batch};

pub trait DualEncoder<B: Backend> {
    /// Width of both towers' embeddings.
    fn embed_dim(&self) -> usize;
    /// Side of the square images `encode_image` takes. Every supported model
    /// normalises with OpenAI's CLIP mean and std (open_clip's CLIP and EVA02 configs
    /// alike), so the side is all the image transform needs.
    fn image_size(&self) -> usize;
    /// The tokenizer of the text tower, checked against its context length and
    /// vocabulary.
    fn tokenizer(&self) -> Result<ClipTokenizer>;
    /// `[n, 3, size, size]` normalised pixels -> `[n, embed_dim]`, unnormalised.
    fn encode_image(&self, images: Tensor<B, 4>) -> Tensor<B, 2>;
    /// `[n, context_length]` token ids -> `[n, embed_dim]`, unnormalised.
    fn encode_text(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2>;
}

impl<B: Backend> DualEncoder<B> for crate::Clip<B> {
    fn embed_dim(&self) -> usize {
        self.config.embed_dim
    }

    fn image_size(&self) -> usize {
        self.config.vision_cfg.image_size
    }

    fn tokenizer(&self) -> Result<ClipTokenizer> {
        ClipTokenizer::for_text_tower(&self.config.text_cfg)
    }

    fn encode_image(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        crate::Clip::encode_image(self, images)
    }

    fn encode_text(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        crate::Clip::encode_text(self, tokens)
    }
}

/// One batch of preprocessed images (CHW rows, `3 * size * size` values each) through
/// the image tower; rows L2-normalised when `normalize` (as CLIP_benchmark and the
/// builder use them), else as open_clip's `encode_image` returns them.
pub fn embed_pixels<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    pixels: &[Vec<f32>],
    normalize: bool,
    device: &B::Device,
) -> Result<Embeddings> {
    let images = image_batch::<B>(pixels, model.image_size(), device);
    finish(model.encode_image(images), normalize)
}

/// One batch of texts through the text tower (tokenised with `tokenizer`); rows
/// L2-normalised when `normalize`.
pub fn embed_texts<B: Backend, M: DualEncoder<B> + ?Sized, S: AsRef<str> + Sync>(
    model: &M,
    tokenizer: &ClipTokenizer,
    texts: &[S],
    normalize: bool,
    device: &B::Device,
) -> Result<Embeddings> {
    let tokens = token_batch::<B>(&tokenizer.tokenize_batch(texts), device);
    finish(model.encode_text(tokens), normalize)
}

fn finish<B: Backend>(features: Tensor<B, 2>, normalize: bool) -> Result<Embeddings> {
    let features = if normalize {
        l2_normalize(features)
    } else {
        features
    };
    let (rows, [_, width]) = to_rows(features);
    Embeddings::new(rows, width)
}
