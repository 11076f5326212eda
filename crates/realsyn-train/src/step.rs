//! One optimisation step's forward and backward passes, over one or several
//! devices and one or several micro-batches, with the contrastive loss always
//! taken over the whole global batch.
//!
//! - **Several devices** (data parallel in one process): each device holds a
//!   replica and runs its slice of the batch; the features are gathered onto the
//!   first device (Burn has no all-gather; `to_device` is differentiable, so the
//!   gradient of each slice flows back to its own device), the loss is computed
//!   there once, and each replica's gradients are summed onto the first device
//!   (the all-reduce) for one optimiser update.
//! - **Micro-batches** (`accum > 1`): open_clip's exact accumulation. First every
//!   micro-batch's features are computed without gradients and cached; then each
//!   micro-batch is run again with gradients and its loss is taken against the
//!   cached features of all the others, so the loss always sees the whole batch as
//!   negatives and the summed gradients equal the whole-batch gradient.
//!
//! One deliberate difference from open_clip: every micro-batch's loss depends on
//! the logit scale directly, so summing `accum` backward passes counts its gradient
//! `accum` times (open_clip does). Here it is divided by `accum`, which makes every
//! gradient, the logit scale's included, equal to the unaccumulated step's.

use anyhow::{Result, bail};
use burn::module::{AutodiffModule, Param, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use realsyn_model::clip::loss::clip_loss;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::batch::to_scalar;
use realsyn_model::common::walk::{Layout, ParamVisitor};
use realsyn_model::{Clip, l2_normalize};

use crate::optim::NamedGrads;

pub struct StepOutput<B: AutodiffBackend> {
    pub loss: f64,
    /// Summed over replicas, on the first device.
    pub grads: NamedGrads<B::InnerBackend>,
}

/// One device's share of a step: its replica and its slice of the batch.
pub struct DeviceSlice<B: AutodiffBackend> {
    pub model: Clip<B>,
    pub images: Tensor<B, 4>,
    pub tokens: Tensor<B, 2, Int>,
}

/// A copy of `model` on `device` whose parameters are new autodiff leaves, so its
/// gradients are its own (the broadcast of a data-parallel step).
pub fn replicate<B: AutodiffBackend>(model: &Clip<B>, device: &B::Device) -> Result<Clip<B>> {
    struct Copy<'a, B: AutodiffBackend>(&'a B::Device);
    impl<B: AutodiffBackend> ParamVisitor<B> for Copy<'_, B> {
        fn visit<const D: usize>(
            &mut self,
            _: &str,
            _: Layout,
            p: &mut Param<Tensor<B, D>>,
        ) -> Result<()> {
            let t = p.val().inner().to_device(self.0);
            *p = Param::initialized(ParamId::new(), Tensor::from_inner(t).require_grad());
            Ok(())
        }
    }
    let mut copy = model.clone();
    visit_params(&mut copy, &mut Copy::<B>(device))?;
    Ok(copy)
}

/// Single device: the whole batch on `model`'s device.
pub fn forward_backward<B: AutodiffBackend>(
    model: &Clip<B>,
    images: Tensor<B, 4>,
    tokens: Tensor<B, 2, Int>,
    accum: usize,
) -> Result<StepOutput<B>> {
    data_parallel_step(
        vec![DeviceSlice {
            model: model.clone(),
            images,
            tokens,
        }],
        accum,
    )
}

/// The general step: `slices[k]` on device k (slice 0's device gathers), each
/// split into `accum` micro-batches.
pub fn data_parallel_step<B: AutodiffBackend>(
    slices: Vec<DeviceSlice<B>>,
    accum: usize,
) -> Result<StepOutput<B>> {
    if slices.is_empty() {
        bail!("a step needs at least one device");
    }
    for s in &slices {
        let n = s.images.dims()[0];
        if accum == 0 || n % accum != 0 || n != s.tokens.dims()[0] {
            bail!("a device's {n} samples cannot be split into {accum} equal micro-batches");
        }
    }
    let gather_device = slices[0].images.device();
    let gather = |t: Tensor<B, 2>| t.to_device(&gather_device);

    // micro[k][j] = (images, tokens) of device k, micro-batch j.
    let micro: Vec<Vec<(Tensor<B, 4>, Tensor<B, 2, Int>)>> = slices
        .iter()
        .map(|s| {
            s.images
                .clone()
                .chunk(accum, 0)
                .into_iter()
                .zip(s.tokens.clone().chunk(accum, 0))
                .collect()
        })
        .collect();

    // Pass 1 (only with accumulation): every micro-batch's features, no graph kept.
    let cached: Vec<Vec<(Tensor<B::InnerBackend, 2>, Tensor<B::InnerBackend, 2>)>> = if accum > 1 {
        slices
            .iter()
            .zip(&micro)
            .map(|(s, parts)| {
                let frozen = s.model.valid();
                parts
                    .iter()
                    .map(|(i, t)| {
                        (
                            l2_normalize(frozen.encode_image(i.clone().inner()))
                                .to_device(&gather_device),
                            l2_normalize(frozen.encode_text(t.clone().inner()))
                                .to_device(&gather_device),
                        )
                    })
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };

    // Pass 2: micro-batch j on every device with gradients, the rest from the cache.
    let mut grads: NamedGrads<B::InnerBackend> = NamedGrads::default();
    let mut loss_value = f64::NAN;
    for j in 0..accum {
        let fresh: Vec<_> = slices
            .iter()
            .zip(&micro)
            .map(|(s, parts)| {
                let (i, t) = parts[j].clone();
                let img = l2_normalize(s.model.encode_image(i));
                let txt = l2_normalize(s.model.encode_text(t));
                (gather(img), gather(txt))
            })
            .collect();
        let mut img = Vec::new();
        let mut txt = Vec::new();
        // Global order: micro-batch major, then device; the same for both towers.
        for jj in 0..accum {
            for (k, f) in fresh.iter().enumerate() {
                if jj == j {
                    img.push(f.0.clone());
                    txt.push(f.1.clone());
                } else {
                    img.push(Tensor::from_inner(cached[k][jj].0.clone()));
                    txt.push(Tensor::from_inner(cached[k][jj].1.clone()));
                }
            }
        }
        let scale = slices[0].model.logit_scale.val().exp();
        let loss = clip_loss(Tensor::cat(img, 0), Tensor::cat(txt, 0), scale);
        loss_value = to_scalar(loss.clone());
        let backward = loss.backward();
        for s in &slices {
            let mut g = NamedGrads::collect(&s.model, &backward)?;
            g.move_to(&gather_device);
            grads.accumulate(g);
        }
    }
    if accum > 1 {
        if let Some(g) = grads.grads.get_mut("logit_scale") {
            *g = g.clone().div_scalar(accum as f64);
        }
    }
    Ok(StepOutput {
        loss: loss_value,
        grads,
    })
}
