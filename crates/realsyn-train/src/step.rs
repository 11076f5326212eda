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
//! - **Several processes** (`distributed`, one rank per device): each rank's
//!   features are all-gathered as values, and each rank computes the same loss over
//!   the whole global batch with its own rows still differentiable and the other
//!   ranks' rows constant. Its backward pass gives the part of the gradient that
//!   flows through its own rows; the all-reduce sums those parts, which is exactly
//!   the global-batch gradient: what open_clip gets from `gather_with_grad` (whose
//!   all-gather backward sums every rank's gradient of its slice) followed by DDP's
//!   average. The logit scale, seen whole by every rank, is divided by the world.
//!
//! - **Mixed precision** (`Precision::AmpBf16`): the forward and backward passes
//!   run on a bf16 copy of each replica's weights, made once per step as leaves of
//!   the graph ([`in_precision`]; on a GPU from the optimiser's flat buffers, one
//!   cast per group, `AdamW::weights_in`); their bf16 gradients are converted to f32,
//!   the master weights' type, as the backward pass of a cast would (while being
//!   packed, on a GPU). Images enter as bf16, and the features are cast back to f32
//!   before normalisation, so the logits, the loss and the logit scale stay f32, as
//!   under open_clip's autocast. Unlike autocast, LayerNorm and softmax also run in
//!   bf16.
//!
//! - **Activation checkpointing** (`grad_checkpointing`, open_clip's
//!   `--grad-checkpointing`): each tower of the micro-batch being differentiated
//!   runs forward without a graph, keeping only every block's input; the head (pool,
//!   norm, projection) runs on the last block's output as a leaf of the loss graph.
//!   After the loss's backward pass, the blocks are run again one at a time, last
//!   first, each with its own backward pass seeded by the gradient of its output
//!   (the backward of `sum(block(x) * g)` is exactly `g` through the block), which
//!   gives the gradient of its input for the block before it. So at most one block's
//!   activations are alive at a time, for one extra forward pass per step; the
//!   gradients are the uncheckpointed ones (`tests/checkpointing.rs`).
//!
//! One deliberate difference from open_clip: every micro-batch's loss depends on
//! the logit scale directly, so summing `accum` backward passes counts its gradient
//! `accum` times (open_clip does). Here it is divided by `accum`, which makes every
//! gradient, the logit scale's included, equal to the unaccumulated step's.

use anyhow::{Context, Result, bail};
use burn::module::{AutodiffModule, Module, Param, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Int, Tensor};
use realsyn_model::clip::loss::clip_loss;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::batch::to_scalar;
use realsyn_model::common::stages::TowerStages;
use realsyn_model::common::walk::{Layout, ParamVisitor};
use realsyn_model::{Clip, l2_normalize};

use crate::distributed::ProcessGroup;
use crate::optim::{FlatLayout, NamedGrads};
use crate::recipe::Precision;

pub struct StepOutput<B: AutodiffBackend> {
    pub loss: f64,
    /// The global batch's gradient: summed over devices and ranks, on the first device.
    pub grads: NamedGrads<B::InnerBackend>,
}

/// Features of one tower, `[rows, dim]`, held without a graph.
type Frozen<B> = Tensor<<B as AutodiffBackend>::InnerBackend, 2>;

/// One device's share of a step: its replica and its slice of the batch.
pub struct DeviceSlice<B: AutodiffBackend> {
    /// The f32 weights, or already those the step's precision runs with
    /// (`AdamW::weights_in`).
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

/// How one step runs, beyond its data: open_clip's `--accum-freq`, `--precision`
/// and `--grad-checkpointing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPlan {
    /// Micro-batches per step; the loss stays exact.
    pub accum: usize,
    pub precision: Precision,
    /// Keep only each block's input and recompute the blocks in the backward pass.
    pub grad_checkpointing: bool,
    /// Pack each backward pass's gradients into one buffer in the foreach AdamW's
    /// layout ([`NamedGrads::pack`]): what a GPU step wants (`AdamW::foreach`),
    /// so that summing, the all-reduce, the norm and the update are a few kernels
    /// over one buffer instead of a few per parameter.
    pub pack_grads: bool,
}

impl StepPlan {
    /// `accum` micro-batches, f32, every activation kept.
    pub fn accumulating(accum: usize) -> Self {
        Self {
            accum,
            precision: Precision::F32,
            grad_checkpointing: false,
            pack_grads: false,
        }
    }
}

/// Single device: the whole batch on `model`'s device.
pub fn forward_backward<B: AutodiffBackend>(
    model: &Clip<B>,
    images: Tensor<B, 4>,
    tokens: Tensor<B, 2, Int>,
    plan: StepPlan,
) -> Result<StepOutput<B>> {
    distributed_step(
        vec![DeviceSlice {
            model: model.clone(),
            images,
            tokens,
        }],
        plan,
        &mut ProcessGroup::single(),
    )
}

/// One process: `slices[k]` on device k (slice 0's device gathers), each split into
/// `plan.accum` micro-batches.
pub fn data_parallel_step<B: AutodiffBackend>(
    slices: Vec<DeviceSlice<B>>,
    plan: StepPlan,
) -> Result<StepOutput<B>> {
    distributed_step(slices, plan, &mut ProcessGroup::single())
}

/// The weights a step in `precision` runs with: `model` itself in f32; under
/// amp_bf16 every parameter in bf16 as a leaf of a new graph, so that its gradient
/// arrives in bf16 and is converted with the others (`NamedGrads::pack`,
/// `NamedGrads::into_f32`), the logit scale excepted (the loss reads it in f32, as
/// autocast leaves it). A parameter already in bf16 (`AdamW::weights_in`) is kept.
fn in_precision<B: AutodiffBackend>(model: &Clip<B>, precision: Precision) -> Result<Clip<B>> {
    struct Cast;
    impl<B: AutodiffBackend> ParamVisitor<B> for Cast {
        fn visit<const D: usize>(
            &mut self,
            _: &str,
            layout: Layout,
            p: &mut Param<Tensor<B, D>>,
        ) -> Result<()> {
            let value = p.val();
            if layout == Layout::Scalar || value.dtype() == DType::BF16 {
                return Ok(());
            }
            let tracked = value.is_require_grad();
            let mut cast = Tensor::from_inner(value.inner().cast(FloatDType::BF16));
            if tracked {
                cast = cast.require_grad();
            }
            *p = Param::initialized(p.id, cast);
            Ok(())
        }
    }
    let mut m = model.clone();
    if precision == Precision::AmpBf16 {
        visit_params(&mut m, &mut Cast)?;
    }
    Ok(m)
}

/// Both towers of `model` on one micro-batch under `precision` (images enter bf16
/// under `AmpBf16`).
fn tower_stages<B: Backend>(
    model: &Clip<B>,
    images: Tensor<B, 4>,
    tokens: Tensor<B, 2, Int>,
    precision: Precision,
) -> [TowerStages<'_, B>; 2] {
    let images = match precision {
        Precision::F32 => images,
        Precision::AmpBf16 => images.cast(FloatDType::BF16),
    };
    [model.visual.stages(images), model.text.stages(tokens)]
}

/// A tower's output as the loss takes it: f32, L2-normalised.
fn loss_features<B: Backend>(features: Tensor<B, 2>, precision: Precision) -> Tensor<B, 2> {
    match precision {
        Precision::F32 => l2_normalize(features),
        Precision::AmpBf16 => l2_normalize(features.cast(FloatDType::F32)),
    }
}

/// The normalised f32 features of one micro-batch under `precision`.
fn encode<B: Backend>(
    model: &Clip<B>,
    images: Tensor<B, 4>,
    tokens: Tensor<B, 2, Int>,
    precision: Precision,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [image, text] = tower_stages(model, images, tokens, precision);
    (
        loss_features(image.run(), precision),
        loss_features(text.run(), precision),
    )
}

/// What a checkpointed tower keeps for its backward pass.
struct Checkpointed<B: AutodiffBackend> {
    /// Every block's input, computed without a graph.
    block_inputs: Vec<Tensor<B, 3>>,
    /// The last block's output as a leaf of the loss graph, where the gradient that
    /// seeds the blocks' backward passes arrives.
    head_input: Tensor<B, 3>,
}

/// The tower's features with only its blocks' inputs kept: the trunk runs on
/// `frozen` (the same weights, untracked, so no graph is recorded), the head on
/// `tracked`.
fn checkpointed_forward<B: AutodiffBackend>(
    frozen: &TowerStages<'_, B>,
    tracked: &TowerStages<'_, B>,
) -> (Tensor<B, 2>, Checkpointed<B>) {
    let mut block_inputs = Vec::with_capacity(frozen.blocks.len());
    let mut x = (frozen.stem)();
    for block in &frozen.blocks {
        block_inputs.push(x.clone());
        x = block(x);
    }
    let head_input = x.require_grad();
    let features = (tracked.head)(head_input.clone());
    let kept = Checkpointed {
        block_inputs,
        head_input,
    };
    (features, kept)
}

/// The blocks' and the stem's gradients of a checkpointed tower, given the loss's
/// backward pass: one block at a time, last first, each recomputed from its kept
/// input with a graph and differentiated on its own.
fn checkpointed_backward<B: AutodiffBackend>(
    tracked: &TowerStages<'_, B>,
    kept: Checkpointed<B>,
    loss_grads: &B::Gradients,
    model: &Clip<B>,
    out: &mut NamedGrads<B::InnerBackend>,
) -> Result<()> {
    let mut upstream = kept
        .head_input
        .grad(loss_grads)
        .context("the loss's backward pass left no gradient at a tower's last block")?;
    for (block, input) in tracked.blocks.iter().zip(kept.block_inputs).rev() {
        let input = input.require_grad();
        let seeded = (block(input.clone()) * Tensor::from_inner(upstream)).sum();
        let grads = seeded.backward();
        out.accumulate(NamedGrads::collect(model, &grads)?);
        upstream = input
            .grad(&grads)
            .context("a block's backward pass left no gradient at its input")?;
    }
    let seeded = ((tracked.stem)() * Tensor::from_inner(upstream)).sum();
    out.accumulate(NamedGrads::collect(model, &seeded.backward())?);
    Ok(())
}

/// The general step: this rank's `slices` (as in [`data_parallel_step`]) in a job
/// of `group.world()` ranks, each holding the same number of rows.
pub fn distributed_step<B: AutodiffBackend>(
    slices: Vec<DeviceSlice<B>>,
    plan: StepPlan,
    group: &mut ProcessGroup,
) -> Result<StepOutput<B>> {
    let StepPlan {
        accum, precision, ..
    } = plan;
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

    // Each replica's weights in the step's precision, once for every pass.
    let tracked: Vec<Clip<B>> = slices
        .iter()
        .map(|s| in_precision(&s.model, precision))
        .collect::<Result<_>>()?;

    // Pass 1 (only with accumulation): every micro-batch's features, no graph kept.
    let cached: Vec<Vec<(Frozen<B>, Frozen<B>)>> = if accum > 1 {
        tracked
            .iter()
            .zip(&micro)
            .map(|(model, parts)| {
                let frozen = model.valid();
                parts
                    .iter()
                    .map(|(i, t)| {
                        let (i, t) =
                            encode(&frozen, i.clone().inner(), t.clone().inner(), precision);
                        (i.to_device(&gather_device), t.to_device(&gather_device))
                    })
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };

    // Every other rank's features, [rank][device][micro-batch]: from the cache with
    // accumulation (one all-gather per step), else gathered in pass 2.
    let (rank, world) = (group.rank(), group.world());
    let mut others: Vec<Vec<Vec<(Frozen<B>, Frozen<B>)>>> = Vec::new();
    if world > 1 && accum > 1 {
        others = gather_features::<B>(group, &cached)?;
    }

    // Pass 2: micro-batch j on every device with gradients, the rest from the cache.
    let mut grads: NamedGrads<B::InnerBackend> = NamedGrads::default();
    let mut layout: Option<FlatLayout> = None;
    let mut loss_value = f64::NAN;
    for j in 0..accum {
        // The same weights untracked: on the autodiff backend, not its inner one, so
        // the kept block inputs come from the very kernels the recomputation runs
        // (Burn's autodiff attention is a decomposition; the inner backend may fuse
        // it, which rounds differently in bf16).
        let frozen: Vec<Clip<B>> = if plan.grad_checkpointing {
            tracked.iter().map(|m| m.clone().no_grad()).collect()
        } else {
            Vec::new()
        };
        // Per device: both towers' stages on micro-batch j, and with checkpointing
        // what their blocks need again after the loss's backward pass.
        let mut towers = Vec::with_capacity(slices.len());
        let mut fresh = Vec::with_capacity(slices.len());
        for (k, model) in tracked.iter().enumerate() {
            let (i, t) = micro[k][j].clone();
            let stages = tower_stages(model, i.clone(), t.clone(), precision);
            let (features, kept) = if plan.grad_checkpointing {
                let frozen = tower_stages(&frozen[k], i, t, precision);
                let (img, img_kept) = checkpointed_forward(&frozen[0], &stages[0]);
                let (txt, txt_kept) = checkpointed_forward(&frozen[1], &stages[1]);
                ([img, txt], Some([img_kept, txt_kept]))
            } else {
                ([stages[0].run(), stages[1].run()], None)
            };
            let [img, txt] = features.map(|f| loss_features(f, precision));
            fresh.push((gather(img), gather(txt)));
            towers.push((stages, kept));
        }
        if world > 1 && accum == 1 {
            let values: Vec<Vec<_>> = fresh
                .iter()
                .map(|(i, t)| vec![(i.clone().inner(), t.clone().inner())])
                .collect();
            others = gather_features::<B>(group, &values)?;
        }
        let mut img = Vec::new();
        let mut txt = Vec::new();
        // Global order: micro-batch major, then rank, then device; the same for both
        // towers (the loss does not depend on the order, only on the pairing).
        for jj in 0..accum {
            for q in 0..world {
                for k in 0..fresh.len() {
                    let (i, t) = if q != rank {
                        let (i, t) = &others[q][k][jj];
                        (Tensor::from_inner(i.clone()), Tensor::from_inner(t.clone()))
                    } else if jj == j {
                        fresh[k].clone()
                    } else {
                        let (i, t) = &cached[k][jj];
                        (Tensor::from_inner(i.clone()), Tensor::from_inner(t.clone()))
                    };
                    img.push(i);
                    txt.push(t);
                }
            }
        }
        let scale = tracked[0].logit_scale.val().exp();
        let loss = clip_loss(Tensor::cat(img, 0), Tensor::cat(txt, 0), scale);
        loss_value = to_scalar(loss.clone());
        let backward = loss.backward();
        for (model, (stages, kept)) in tracked.iter().zip(towers) {
            let mut g = NamedGrads::collect(model, &backward)?;
            for (stages, kept) in stages.iter().zip(kept.into_iter().flatten()) {
                checkpointed_backward(stages, kept, &backward, model, &mut g)?;
            }
            if plan.pack_grads {
                // One layout for the whole step (the first replica's: only it
                // has the logit scale's gradient), so every sum is of whole buffers.
                let layout = match &layout {
                    Some(l) => l,
                    None => layout.insert(FlatLayout::of(model, true, |k| g.len_of(k))?),
                };
                g.pack(layout.clone());
            }
            // bf16 under amp_bf16, unless packed (converted while being packed).
            let mut g = g.into_f32();
            g.move_to(&gather_device);
            grads.accumulate(g);
        }
    }
    // Every micro-batch's loss, on every rank, sees the logit scale whole.
    let seen = accum * world;
    if seen > 1 {
        grads.div_one("logit_scale", seen as f64);
    }
    group.all_reduce_grads(&mut grads)?;
    Ok(StepOutput {
        loss: loss_value,
        grads,
    })
}

/// All-gather this rank's features `mine[device][micro-batch]` (image, text); the
/// result is indexed `[rank][device][micro-batch]`, this rank's entry left empty.
fn gather_features<B: AutodiffBackend>(
    group: &mut ProcessGroup,
    mine: &[Vec<(Frozen<B>, Frozen<B>)>],
) -> Result<Vec<Vec<Vec<(Frozen<B>, Frozen<B>)>>>> {
    let [rows, dim] = mine[0][0].0.dims();
    let device = &mine[0][0].0.device();
    let block = rows * dim;
    // One flat tensor per rank: each device's micro-batches in order, image then text.
    let parts = mine
        .iter()
        .flatten()
        .flat_map(|(image, text)| [image, text])
        .map(|x| x.clone().to_device(device).reshape([block]))
        .collect();
    let all = group.all_gather_tensor(Tensor::cat(parts, 0), "the feature all-gather")?;
    let features = |flat: &Tensor<B::InnerBackend, 1>, at: usize| -> Frozen<B> {
        flat.clone()
            .slice(at * block..(at + 1) * block)
            .reshape([rows, dim])
    };
    let mut out = Vec::with_capacity(all.len());
    for (q, flat) in all.iter().enumerate() {
        if q == group.rank() {
            out.push(Vec::new());
            continue;
        }
        let mut at = 0;
        let mut per_rank = Vec::with_capacity(mine.len());
        for per_device in mine {
            let mut micro = Vec::with_capacity(per_device.len());
            for _ in per_device {
                micro.push((features(flat, at), features(flat, at + 1)));
                at += 2;
            }
            per_rank.push(micro);
        }
        out.push(per_rank);
    }
    Ok(out)
}
