//! One optimisation step's forward and backward passes.
//!
//! With `accum > 1` this is open_clip's exact gradient accumulation: first every
//! micro-batch's features are computed without gradients and cached; then each
//! micro-batch is run again with gradients and its loss is taken against the cached
//! features of all the others. The contrastive loss therefore always sees the whole
//! batch as negatives, and the summed gradients equal the whole-batch gradient.
//!
//! One deliberate difference from open_clip: every micro-batch's loss depends on
//! the logit scale directly, so summing `accum` backward passes counts its gradient
//! `accum` times (open_clip does). Here it is divided by `accum`, which makes every
//! gradient, the logit scale's included, equal to the unaccumulated step's.

use anyhow::{Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use realsyn_model::loss::clip_loss;
use realsyn_model::{Clip, l2_normalize};

use crate::optim::NamedGrads;

pub struct StepOutput<B: AutodiffBackend> {
    pub loss: f64,
    pub grads: NamedGrads<B::InnerBackend>,
}

pub fn forward_backward<B: AutodiffBackend>(
    model: &Clip<B>,
    images: Tensor<B, 4>,
    tokens: Tensor<B, 2, Int>,
    accum: usize,
) -> Result<StepOutput<B>> {
    let n = images.dims()[0];
    if accum == 0 || n % accum != 0 {
        bail!("batch of {n} cannot be split into {accum} equal micro-batches");
    }
    if accum == 1 {
        let out = model.forward(images, tokens);
        let loss = clip_loss(out.image_features, out.text_features, out.logit_scale);
        let value = scalar(&loss);
        let grads = NamedGrads::collect(model, &loss.backward())?;
        return Ok(StepOutput { loss: value, grads });
    }

    let images = images.chunk(accum, 0);
    let tokens = tokens.chunk(accum, 0);
    // Pass 1: features of every micro-batch, no graph kept.
    let frozen = model.valid();
    let cached: Vec<_> = images
        .iter()
        .zip(&tokens)
        .map(|(i, t)| {
            (
                l2_normalize(frozen.encode_image(i.clone().inner())),
                l2_normalize(frozen.encode_text(t.clone().inner())),
            )
        })
        .collect();
    // Pass 2: each micro-batch with gradients against the cached rest.
    let mut grads = NamedGrads::default();
    let mut loss_value = 0.0;
    for j in 0..accum {
        let out = model.forward(images[j].clone(), tokens[j].clone());
        let mut img = Vec::with_capacity(accum);
        let mut txt = Vec::with_capacity(accum);
        for (k, (ci, ct)) in cached.iter().enumerate() {
            if k == j {
                img.push(out.image_features.clone());
                txt.push(out.text_features.clone());
            } else {
                img.push(Tensor::from_inner(ci.clone()));
                txt.push(Tensor::from_inner(ct.clone()));
            }
        }
        let loss = clip_loss(Tensor::cat(img, 0), Tensor::cat(txt, 0), out.logit_scale);
        loss_value = scalar(&loss);
        grads.accumulate(NamedGrads::collect(model, &loss.backward())?);
    }
    if let Some(g) = grads.grads.get_mut("logit_scale") {
        *g = g.clone().div_scalar(accum as f64);
    }
    Ok(StepOutput {
        loss: loss_value,
        grads,
    })
}

fn scalar<B: AutodiffBackend>(t: &Tensor<B, 1>) -> f64 {
    t.clone()
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .map_or(f64::NAN, |v| v[0])
}
