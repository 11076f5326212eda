//! The zero-shot classifier of a dual encoder (open_clip's
//! `build_zero_shot_classifier`): each class is the L2-normalised mean of its
//! L2-normalised prompt embeddings. Built here, in the model library, so the trainer's
//! zero-shot hook and the evaluator share it without depending on each other.

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

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

/// Zero-shot logits `[n, classes]` (row-major): 100 x the cosine of each of the `n`
/// L2-normalised `features` rows (`dim` wide) with each class column of
/// `classifier`, all rows in one product. The scale is CLIP's; it changes no metric
/// but keeps logits comparable.
pub fn zero_shot_logits<B: Backend>(
    features: Vec<f32>,
    dim: usize,
    classifier: Tensor<B, 2>,
    device: &B::Device,
) -> Vec<f64> {
    let n = if dim == 0 { 0 } else { features.len() / dim };
    if n == 0 {
        return Vec::new();
    }
    let x = Tensor::<B, 2>::from_data(TensorData::new(features, [n, dim]), device);
    let (logits, _) = crate::common::batch::to_rows(x.matmul(classifier).mul_scalar(100.0));
    logits.into_iter().map(f64::from).collect()
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
