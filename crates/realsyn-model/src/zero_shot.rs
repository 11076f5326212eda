//! The zero-shot classifier of a dual encoder (open_clip's
//! `build_zero_shot_classifier`): each class is the L2-normalised mean of its
//! L2-normalised prompt embeddings. Built here, in the model library, so the trainer's
//! zero-shot hook and the evaluator share it without depending on each other.

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::clip::l2_normalize;
use crate::clip::tokenizer::ClipTokenizer;
use crate::common::batch::token_batch;
use crate::encoder::DualEncoder;

/// A template with the class name put in: `{c}` (CLIP_benchmark) or `{}` (SLIP/CLIP).
pub fn fill_template(template: &str, class: &str) -> String {
    if template.contains("{c}") {
        template.replace("{c}", class)
    } else {
        template.replace("{}", class)
    }
}

/// `[embed_dim, n_classes]` classifier weights.
pub fn zero_shot_classifier<B: Backend, M: DualEncoder<B> + ?Sized>(
    model: &M,
    tokenizer: &ClipTokenizer,
    classnames: &[String],
    templates: &[String],
    device: &B::Device,
) -> Result<Tensor<B, 2>> {
    if templates.is_empty() {
        bail!("zero-shot classification needs at least one prompt template");
    }
    let mut columns = Vec::with_capacity(classnames.len());
    for c in classnames {
        let texts: Vec<String> = templates.iter().map(|t| fill_template(t, c)).collect();
        let rows = tokenizer.tokenize_batch(&texts);
        let emb = l2_normalize(model.encode_text(token_batch::<B>(&rows, device)));
        columns.push(l2_normalize(emb.mean_dim(0)));
    }
    Ok(Tensor::cat(columns, 0).transpose())
}
