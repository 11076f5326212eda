//! AdamW exactly as `torch.optim.AdamW` computes it, with open_clip's parameter
//! groups, over gradients keyed by open_clip parameter names.
//!
//! Why not Burn's optimiser: its state is keyed by `ParamId` and its weight-decay
//! groups need ids; here both the decay rule (open_clip's, by name and rank) and the
//! saved state (`exp_avg.<name>` in PyTorch's layout, comparable with a torch
//! optimiser's state dict) are by name, and gradients from several micro-batches or
//! devices are summed by name before one update.
//!
//! Two ways to run the same update, chosen as torch chooses by default: on a GPU
//! (`foreach`) all parameters of a weight-decay group at once, as one flat buffer
//! each of gradients, moments and the parameters themselves (the model's
//! parameters are views of the last), so a step is about fifteen element-wise ops
//! per group whatever the number of parameters, where per parameter it was
//! fourteen each (4,228 for ViT-B/32's 302 tensors): each op is a kernel launch with
//! a host-side cost, and the CUDA step showed a large per-step constant
//! (docs/performance.md, "GPU"). When the step packed the gradients in the same
//! layout ([`NamedGrads::pack`]), the update reads them as views, with no copy. On
//! the CPU a loop over parameters: there the flat buffers made a ViT-B/32 step 2.4 s
//! slower (13.2 vs 10.8 s, batch 32) and 550 MB larger (each op writes a fresh
//! 600 MB buffer). Both are one code path (a group of one parameter is not copied),
//! and each element sees the same arithmetic in the same order, so the results are
//! identical.
//!
//! On the CPU backend a group of one parameter is updated in one pass
//! (`fused_cpu`, torch's `fused=True`): the same f32 operations, without fourteen
//! tensor ops' passes and buffers. A lone parameter's step is computed when the
//! parameter is visited and applied at once, while its memory is still in cache.

use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{FloatDType, Tensor};
use realsyn_model::Clip;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::walk::{Layout, ParamVisitor};

mod fused_cpu;
mod grads;
mod layout;
mod state;

pub use grads::NamedGrads;
use layout::Span;
#[cfg(test)]
use layout::group_of;
pub use layout::{FlatLayout, Group};

#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// open_clip's exclusion rule (`main.py`): no weight decay for tensors with fewer
/// than 2 dims (gains, biases, class embedding, logit scale) or whose name has
/// `bn`, `ln`, `bias` or `logit_scale`. Rank is PyTorch's: the logit scale is 0-d.
pub fn decays(name: &str, torch_rank: usize) -> bool {
    !(torch_rank < 2
        || ["bn", "ln", "bias", "logit_scale"]
            .iter()
            .any(|s| name.contains(s)))
}

struct Moments<B: Backend> {
    exp_avg: Tensor<B, 1>,
    exp_avg_sq: Tensor<B, 1>,
}

/// One group after an update: its layout, its moments flat in the order its
/// parameters are visited, and for a group of many its parameters' values flat
/// (the model's parameters are views of them).
struct GroupState<B: Backend> {
    group: Group,
    moments: Moments<B>,
    params: Option<Tensor<B, 1>>,
}

impl<B: Backend> GroupState<B> {
    /// One parameter's moments (views into the flat buffers).
    fn get(&self, key: &str) -> Option<Moments<B>> {
        let &(_, off, len) = self.group.spans.iter().find(|(k, _, _)| k == key)?;
        Some(Moments {
            exp_avg: self.moments.exp_avg.clone().slice([off..off + len]),
            exp_avg_sq: self.moments.exp_avg_sq.clone().slice([off..off + len]),
        })
    }
}

pub struct AdamW<B: Backend> {
    pub config: AdamWConfig,
    /// Updates applied so far (PyTorch's per-parameter `step`, shared here).
    pub step: u64,
    /// torch's `foreach`: one flat group per weight-decay class, else one group per
    /// parameter. [`AdamW::for_device`] sets it as torch does by default.
    pub foreach: bool,
    /// The last update's groups.
    groups: Vec<GroupState<B>>,
    /// Moments outside the groups: restored by `load_state_dict`, or of a parameter
    /// that had no gradient in the last update (torch keeps those too).
    parked: HashMap<String, Moments<B>>,
}

impl<B: Backend> AdamW<B> {
    /// A loop over parameters (`foreach` off).
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            foreach: false,
            groups: Vec::new(),
            parked: HashMap::new(),
        }
    }

    /// torch's default: `foreach` for parameters on a GPU, a loop on the CPU
    /// (`device` as `--device` spells it: cpu, ndarray, cuda[:N], lists).
    pub fn for_device(config: AdamWConfig, device: &str) -> Self {
        let on_cpu = device.starts_with("cpu") || device.starts_with("ndarray");
        Self {
            foreach: !on_cpu,
            ..Self::new(config)
        }
    }

    /// How the next update lays out `model`'s parameters that have a gradient in
    /// `grads`: what the step packs its gradients as ([`NamedGrads::pack`]).
    pub fn layout<AB: AutodiffBackend<InnerBackend = B>>(
        &self,
        model: &Clip<AB>,
        grads: &NamedGrads<B>,
    ) -> Result<FlatLayout> {
        FlatLayout::of(model, self.foreach, |k| grads.len_of(k))
    }

    /// The weights a step in `dtype` runs with: `model` itself in f32; in bf16 (the
    /// amp_bf16 forward pass) each group whose values the optimiser holds flat is
    /// cast once, a kernel per group where a cast per parameter was a kernel
    /// forward and another backward for each of ~300 tensors, and its parameters
    /// become views of the cast (aligned, `crate::flat`) as leaves of a new graph.
    /// The step casts the others one at a time (`step::in_precision`); the numbers
    /// are the same either way.
    pub fn weights_in<AB: AutodiffBackend<InnerBackend = B>>(
        &self,
        model: &Clip<AB>,
        dtype: FloatDType,
    ) -> Result<Clip<AB>> {
        struct Views<B: Backend>(HashMap<String, Tensor<B, 1>>);
        impl<AB: AutodiffBackend> ParamVisitor<AB> for Views<AB::InnerBackend> {
            fn visit<const D: usize>(
                &mut self,
                key: &str,
                _: Layout,
                p: &mut Param<Tensor<AB, D>>,
            ) -> Result<()> {
                if let Some(view) = self.0.remove(key) {
                    let value = Tensor::from_inner(view.reshape(p.val().shape()));
                    *p = Param::initialized(p.id, value.require_grad());
                }
                Ok(())
            }
        }
        let mut views = HashMap::new();
        if dtype != FloatDType::F32 {
            for g in &self.groups {
                let Some(flat) = &g.params else { continue };
                let cast = flat.clone().cast(dtype);
                for (key, off, len) in &g.group.spans {
                    views.insert(key.clone(), cast.clone().slice(*off..off + len));
                }
            }
        }
        let mut weights = model.clone();
        visit_params(&mut weights, &mut Views(views))?;
        Ok(weights)
    }

    /// One parameter's moments, wherever they are kept.
    fn moments(&self, key: &str) -> Option<Moments<B>> {
        self.groups.iter().find_map(|g| g.get(key)).or_else(|| {
            self.parked.get(key).map(|m| Moments {
                exp_avg: m.exp_avg.clone(),
                exp_avg_sq: m.exp_avg_sq.clone(),
            })
        })
    }

    /// One update of every parameter that has a gradient, at learning rate `lr`
    /// and first-moment decay `beta1` (the config's unless a schedule cycles it).
    ///
    /// With `foreach`, each group of many keeps its parameters' values in one flat
    /// buffer and gives the model views of it; a parameter in such a group must be
    /// changed only through the optimiser (`update`, `load_state_dict`), as torch's
    /// flat-parameter optimisers require. The logit scale, which open_clip clamps
    /// after each step, is always a group of its own ([`FlatLayout`]).
    pub fn update<AB: AutodiffBackend<InnerBackend = B>>(
        &mut self,
        model: &mut Clip<AB>,
        grads: &NamedGrads<B>,
        lr: f64,
        beta1: f64,
    ) -> Result<()> {
        self.step += 1;
        let layout = self.layout(model, grads)?;
        let c = self.config;
        let t = self.step as i32;
        let rule = StepRule {
            lr,
            beta1,
            beta2: c.beta2,
            eps: c.eps,
            bc1: 1.0 - beta1.powi(t),
            bc2_sqrt: (1.0 - c.beta2.powi(t)).sqrt(),
        };
        let packed = grads.packed_as(&layout).cloned();
        let mut kept = self.kept_state(&layout);
        // The values of groups of many that the optimiser does not hold yet.
        let mut wanted = HashSet::new();
        for g in &layout.groups {
            if g.spans.len() > 1 && kept.get(&g.spans[0].0).is_none_or(|(_, p)| p.is_none()) {
                wanted.extend(g.spans.iter().map(|(k, _, _)| k.clone()));
            }
        }
        let mut values = param_values(model, wanted)?;
        let mut index = HashMap::new();
        let mut groups = Vec::with_capacity(layout.groups.len());
        for (gi, group) in layout.groups.into_iter().enumerate() {
            let first = &group.spans[0].0;
            let device = match &packed {
                Some(flat) => flat.device(),
                None => grads.get(first).expect("in the layout").device(),
            };
            let (m, params) = match kept.remove(first) {
                Some(state) => state,
                None => (self.gather(&group.spans, &device), None),
            };
            let g = match &packed {
                Some(flat) => flat
                    .clone()
                    .slice(group.start..group.start + group.buffer_len()),
                None => flat(
                    &group.spans,
                    (group.spans.iter())
                        .map(|(k, _, _)| grads.get(k).expect("in the layout"))
                        .collect(),
                ),
            };
            for (k, off, len) in &group.spans {
                index.insert(k.clone(), (gi, *off, *len));
            }
            if group.spans.len() == 1 {
                // Updated when the model's parameter is visited (its value is there).
                groups.push(Some(Pending::Lone { group, g, m }));
                continue;
            }
            let p = params.unwrap_or_else(|| {
                let parts = (group.spans.iter())
                    .map(|(k, _, _)| values.remove(k).expect("wanted above"))
                    .collect();
                flat(&group.spans, parts)
            });
            let (step, moments) = rule.apply(g, m);
            let p = rule.updated(p, step, decay_of(group.class, c.weight_decay));
            groups.push(Some(Pending::Done(GroupState {
                group,
                moments,
                params: Some(p),
            })));
        }
        let mut v = Apply {
            index,
            groups,
            rule,
            weight_decay: c.weight_decay,
        };
        visit_params(model, &mut v)?;
        self.groups = (v.groups.into_iter())
            .map(|g| match g {
                Some(Pending::Done(state)) => Ok(state),
                None => unreachable!("put back after each visit"),
                Some(Pending::Lone { group, .. }) => {
                    bail!(
                        "{}: has a gradient but is not in the model",
                        group.spans[0].0
                    )
                }
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// The last update's moments (and values, for a group of many) of each new
    /// group whose spans are unchanged, keyed by the group's first parameter; the
    /// last update's other groups are parked.
    fn kept_state(
        &mut self,
        layout: &FlatLayout,
    ) -> HashMap<String, (Moments<B>, Option<Tensor<B, 1>>)> {
        let mut old: HashMap<String, GroupState<B>> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(|g| (g.group.spans[0].0.clone(), g))
            .collect();
        let mut kept = HashMap::new();
        for group in &layout.groups {
            let first = &group.spans[0].0;
            if old.get(first).is_some_and(|g| g.group.spans == group.spans) {
                let g = old.remove(first).expect("checked");
                kept.insert(first.clone(), (g.moments, g.params));
            }
        }
        for g in old.into_values() {
            for (key, _, _) in &g.group.spans {
                let m = g.get(key).expect("a span of this group");
                self.parked.insert(key.clone(), m);
            }
        }
        kept
    }

    /// A new layout's moments from the parked ones, zeros for a parameter seen for
    /// the first time.
    fn gather(&mut self, spans: &[Span], device: &B::Device) -> Moments<B> {
        let (mut avg, mut sq) = (Vec::new(), Vec::new());
        for (key, _, len) in spans {
            let m = self
                .parked
                .remove(key)
                .unwrap_or_else(|| Moments::zeros(*len, device));
            avg.push(m.exp_avg);
            sq.push(m.exp_avg_sq);
        }
        Moments {
            exp_avg: flat(spans, avg),
            exp_avg_sq: flat(spans, sq),
        }
    }
}

impl<B: Backend> Moments<B> {
    fn zeros(len: usize, device: &B::Device) -> Self {
        Self {
            exp_avg: Tensor::zeros([len], device),
            exp_avg_sq: Tensor::zeros([len], device),
        }
    }
}

/// The current values of the parameters named in `wanted`, flat.
fn param_values<AB: AutodiffBackend>(
    model: &Clip<AB>,
    wanted: HashSet<String>,
) -> Result<HashMap<String, Tensor<AB::InnerBackend, 1>>> {
    struct Values<B: Backend> {
        wanted: HashSet<String>,
        out: HashMap<String, Tensor<B, 1>>,
    }
    impl<AB: AutodiffBackend> ParamVisitor<AB> for Values<AB::InnerBackend> {
        fn visit<const D: usize>(
            &mut self,
            key: &str,
            _: Layout,
            param: &mut Param<Tensor<AB, D>>,
        ) -> Result<()> {
            if self.wanted.contains(key) {
                let v = param.val().inner();
                let n = v.shape().num_elements();
                self.out.insert(key.to_string(), v.reshape([n]));
            }
            Ok(())
        }
    }
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let mut v = Values {
        wanted,
        out: HashMap::new(),
    };
    visit_params(&mut model.clone(), &mut v)?;
    Ok(v.out)
}

/// A group's per-parameter tensors (gradients, moments, values) as one flat tensor
/// laid out by its `spans` (`crate::flat`: aligned, so each parameter's slice is a
/// view); a group of one is not copied.
fn flat<B: Backend>(spans: &[Span], parts: Vec<Tensor<B, 1>>) -> Tensor<B, 1> {
    let spans: Vec<(usize, usize)> = spans.iter().map(|(_, off, len)| (*off, *len)).collect();
    crate::flat::cat(&spans, parts)
}

/// torch's AdamW arithmetic for one step, in torch's order of operations.
struct StepRule {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// `1 - beta1^t`, `sqrt(1 - beta2^t)`.
    bc1: f64,
    bc2_sqrt: f64,
}

impl StepRule {
    /// The new moments and the step `lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`.
    fn apply<B: Backend>(&self, g: Tensor<B, 1>, m: Moments<B>) -> (Tensor<B, 1>, Moments<B>) {
        // torch: m.lerp_(g, 1-b1); v = v*b2 + (1-b2) g^2
        let exp_avg = m.exp_avg.clone() + (g.clone() - m.exp_avg).mul_scalar(1.0 - self.beta1);
        let exp_avg_sq =
            m.exp_avg_sq.mul_scalar(self.beta2) + g.powi_scalar(2).mul_scalar(1.0 - self.beta2);
        let denom = exp_avg_sq
            .clone()
            .sqrt()
            .div_scalar(self.bc2_sqrt)
            .add_scalar(self.eps);
        let step = (exp_avg.clone() / denom).mul_scalar(self.lr / self.bc1);
        (
            step,
            Moments {
                exp_avg,
                exp_avg_sq,
            },
        )
    }

    /// The new value: `p * (1 - lr * wd)` with a weight decay, then minus `step`.
    fn updated<B: Backend>(
        &self,
        p: Tensor<B, 1>,
        step: Tensor<B, 1>,
        decay: Option<f64>,
    ) -> Tensor<B, 1> {
        let p = match decay {
            Some(wd) => p.mul_scalar(1.0 - self.lr * wd),
            None => p,
        };
        p - step
    }
}

/// The decoupled weight decay of a weight-decay class (open_clip decays class 0).
fn decay_of(class: usize, weight_decay: f64) -> Option<f64> {
    (class == 0 && weight_decay > 0.0).then_some(weight_decay)
}

/// A group during an update: a lone parameter waits for its visit (its value is
/// read from the model then); a group of many is done before the visit.
enum Pending<B: Backend> {
    Lone {
        group: Group,
        g: Tensor<B, 1>,
        m: Moments<B>,
    },
    Done(GroupState<B>),
}

/// Gives each parameter its new value: a lone one's update computed now
/// (`p = p * (1 - lr * wd) - step`), else its view of its group's new values.
struct Apply<B: Backend> {
    /// Parameter name -> (group, offset, length).
    index: HashMap<String, (usize, usize, usize)>,
    /// Taken out while a parameter is visited.
    groups: Vec<Option<Pending<B>>>,
    rule: StepRule,
    weight_decay: f64,
}

impl<AB: AutodiffBackend> ParamVisitor<AB> for Apply<AB::InnerBackend> {
    fn visit<const D: usize>(
        &mut self,
        key: &str,
        _: Layout,
        param: &mut Param<Tensor<AB, D>>,
    ) -> Result<()> {
        let Some(&(gi, off, len)) = self.index.get(key) else {
            return Ok(()); // no gradient this step
        };
        let shape = param.val().shape();
        let (new, done) = match self.groups[gi].take() {
            Some(Pending::Done(state)) => {
                let all = state
                    .params
                    .as_ref()
                    .expect("a group of many holds its values");
                (all.clone().slice(off..off + len), state)
            }
            Some(Pending::Lone { group, g, m }) => {
                let decay = decay_of(group.class, self.weight_decay);
                let p = take_value(param).inner();
                let (p, moments) = match fused_cpu::step(&self.rule, decay, p.reshape([len]), g, m)
                {
                    Ok(done) => done,
                    Err((p, g, m)) => {
                        let (step, moments) = self.rule.apply(g, m);
                        (self.rule.updated(p, step, decay), moments)
                    }
                };
                let state = GroupState {
                    group,
                    moments,
                    params: None,
                };
                (p, state)
            }
            None => bail!("{key}: visited twice in one update"),
        };
        self.groups[gi] = Some(Pending::Done(done));
        let new = Tensor::from_inner(new.reshape(shape)).require_grad();
        *param = Param::initialized(param.id, new);
        Ok(())
    }
}

/// The parameter's tensor moved out (an empty one left in its place until the new
/// value is set): not a clone, so where nothing else holds it the fused CPU update
/// writes it in place instead of filling a new buffer.
fn take_value<AB: AutodiffBackend, const D: usize>(
    param: &mut Param<Tensor<AB, D>>,
) -> Tensor<AB, D> {
    let empty = Tensor::empty([0; D], &param.val().device());
    std::mem::replace(param, Param::initialized(param.id, empty)).into_value()
}

/// open_clip clamps the log temperature to [0, ln 100] after every step.
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_092;

/// Loaded tensors are leaves without gradient tracking; training needs it on all.
pub fn track_gradients<B: AutodiffBackend>(mut model: Clip<B>) -> Result<Clip<B>> {
    struct Mark;
    impl<B: AutodiffBackend> ParamVisitor<B> for Mark {
        fn visit<const D: usize>(
            &mut self,
            _: &str,
            _: Layout,
            param: &mut Param<Tensor<B, D>>,
        ) -> Result<()> {
            let v = param.val().inner();
            *param = Param::initialized(param.id, Tensor::from_inner(v).require_grad());
            Ok(())
        }
    }
    visit_params(&mut model, &mut Mark)?;
    Ok(model)
}

pub fn clamp_logit_scale<B: AutodiffBackend>(mut model: Clip<B>) -> Clip<B> {
    let v = model.logit_scale.val().inner().clamp(0.0, MAX_LOGIT_SCALE);
    model.logit_scale =
        Param::initialized(model.logit_scale.id, Tensor::from_inner(v).require_grad());
    model
}

#[cfg(test)]
mod tests;
