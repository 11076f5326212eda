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

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{FloatDType, Tensor, TensorData};
use realsyn_model::Clip;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::state_dict::{HostTensor, StateDict};
use realsyn_model::common::walk::{Layout, ParamVisitor, stack, unstack};

mod fused_cpu;
mod grads;
mod layout;

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

    /// State in PyTorch's layout: `exp_avg.<name>`, `exp_avg_sq.<name>`.
    pub fn state_dict<AB: AutodiffBackend<InnerBackend = B>>(
        &self,
        model: &Clip<AB>,
    ) -> Result<StateDict> {
        struct Export<'a, B: Backend> {
            opt: &'a AdamW<B>,
            sd: StateDict,
        }
        impl<AB: AutodiffBackend> ParamVisitor<AB> for Export<'_, AB::InnerBackend> {
            fn visit<const D: usize>(
                &mut self,
                key: &str,
                layout: Layout,
                param: &mut Param<Tensor<AB, D>>,
            ) -> Result<()> {
                let shape = param.val().dims();
                self.export(key, |sd, prefix, moment| {
                    let host = layout
                        .burn_to_torch(HostTensor::from_data(moment.reshape(shape).into_data())?)?;
                    sd.insert(format!("{prefix}.{key}"), host);
                    Ok(())
                })
            }

            /// Under the parameter's PyTorch keys, split as its value is.
            fn visit_stacked<const D: usize>(
                &mut self,
                key: &str,
                parts: &[&str],
                layout: Layout,
                param: &mut Param<Tensor<AB, D>>,
            ) -> Result<()> {
                let shape = param.val().dims();
                self.export(key, |sd, prefix, moment| {
                    let host = HostTensor::from_data(moment.reshape(shape).into_data())?;
                    for (part, t) in parts.iter().zip(unstack(layout, host, parts.len())?) {
                        sd.insert(format!("{prefix}.{part}"), t);
                    }
                    Ok(())
                })
            }
        }
        impl<B: Backend> Export<'_, B> {
            /// `insert(state dict, "exp_avg" | "exp_avg_sq", moment)` for the moments
            /// of `key`, if it has any.
            fn export(
                &mut self,
                key: &str,
                insert: impl Fn(&mut StateDict, &str, Tensor<B, 1>) -> Result<()>,
            ) -> Result<()> {
                let Some(m) = self.opt.moments(key) else {
                    return Ok(());
                };
                for (prefix, t) in [("exp_avg", &m.exp_avg), ("exp_avg_sq", &m.exp_avg_sq)] {
                    insert(&mut self.sd, prefix, t.clone())?;
                }
                Ok(())
            }
        }
        let mut e = Export::<B> {
            opt: self,
            sd: StateDict::default(),
        };
        visit_params::<AB, _>(&mut model.clone(), &mut e)?;
        Ok(e.sd)
    }

    /// Restore from `state_dict`'s output.
    pub fn load_state_dict<AB: AutodiffBackend<InnerBackend = B>>(
        &mut self,
        model: &Clip<AB>,
        mut sd: StateDict,
        step: u64,
        device: &B::Device,
    ) -> Result<()> {
        struct Import<'a, B: Backend> {
            sd: &'a mut StateDict,
            state: HashMap<String, Moments<B>>,
            device: B::Device,
        }
        impl<AB: AutodiffBackend> ParamVisitor<AB> for Import<'_, AB::InnerBackend> {
            fn visit<const D: usize>(
                &mut self,
                key: &str,
                layout: Layout,
                param: &mut Param<Tensor<AB, D>>,
            ) -> Result<()> {
                let n = param.val().shape().num_elements();
                self.import(key, key, n, |sd, prefix| {
                    layout.torch_to_burn(sd.take(&format!("{prefix}.{key}"))?)
                })
            }

            /// From the parameter's PyTorch keys, joined as its value is.
            fn visit_stacked<const D: usize>(
                &mut self,
                key: &str,
                parts: &[&str],
                layout: Layout,
                param: &mut Param<Tensor<AB, D>>,
            ) -> Result<()> {
                let n = param.val().shape().num_elements();
                self.import(key, parts[0], n, |sd, prefix| {
                    let taken = (parts.iter())
                        .map(|part| sd.take(&format!("{prefix}.{part}")))
                        .collect::<Result<Vec<_>>>()?;
                    stack(layout, &taken)
                })
            }
        }
        impl<B: Backend> Import<'_, B> {
            /// The moments of `key` (`n` values), read by `take(state dict, "exp_avg" |
            /// "exp_avg_sq")` in Burn's layout; none (a fresh start) when the state
            /// has no `exp_avg.{probe}`.
            fn import(
                &mut self,
                key: &str,
                probe: &str,
                n: usize,
                mut take: impl FnMut(&mut StateDict, &str) -> Result<HostTensor>,
            ) -> Result<()> {
                if !self.sd.contains(&format!("exp_avg.{probe}")) {
                    return Ok(());
                }
                let mut get = |prefix: &str| -> Result<Tensor<B, 1>> {
                    let t = take(&mut *self.sd, prefix)?;
                    if t.data.len() != n {
                        bail!(
                            "{prefix}.{probe}: {} values, the model has {n}",
                            t.data.len()
                        );
                    }
                    Ok(Tensor::from_data(
                        TensorData::new(t.data, [n]),
                        &self.device,
                    ))
                };
                let exp_avg = get("exp_avg")?;
                let exp_avg_sq = get("exp_avg_sq")?;
                self.state.insert(
                    key.to_string(),
                    Moments {
                        exp_avg,
                        exp_avg_sq,
                    },
                );
                Ok(())
            }
        }
        let mut i = Import::<B> {
            sd: &mut sd,
            state: HashMap::new(),
            device: device.clone(),
        };
        visit_params::<AB, _>(&mut model.clone(), &mut i).context("restoring optimiser state")?;
        let state = i.state;
        if !sd.is_empty() {
            bail!(
                "optimiser state has {} entries the model does not use",
                sd.len()
            );
        }
        self.groups = Vec::new();
        self.parked = state;
        self.step = step;
        Ok(())
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
        let p = param.val().inner();
        let shape = p.shape();
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
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use realsyn_model::ClipConfig;
    use realsyn_model::backend::{Cpu, CpuAutodiff};
    use std::collections::BTreeMap;

    #[test]
    fn open_clip_decay_groups() {
        assert!(decays(
            "visual.transformer.resblocks.0.attn.in_proj_weight",
            2
        ));
        assert!(decays("token_embedding.weight", 2));
        assert!(decays("positional_embedding", 2));
        assert!(decays("visual.conv1.weight", 4));
        assert!(!decays("visual.class_embedding", 1));
        assert!(!decays("visual.ln_pre.weight", 1));
        assert!(!decays("transformer.resblocks.3.ln_2.weight", 1));
        assert!(!decays(
            "visual.transformer.resblocks.0.attn.in_proj_bias",
            1
        ));
        assert!(!decays("logit_scale", 0));
    }

    const TINY: &str = "fashion-mnist-tiny.json";
    /// EVA02 with timm's separate q/k/v projections (one stacked parameter here).
    const TINY_EVA02: &str = "fashion-mnist-eva02-tiny.json";

    fn tiny(arch: &str) -> Clip<CpuAutodiff> {
        let path = format!("{}/../../recipes/models/{arch}", env!("CARGO_MANIFEST_DIR"));
        let cfg = ClipConfig::from_name_or_path(&path).unwrap();
        track_gradients(Clip::new(&cfg, &Default::default())).unwrap()
    }

    /// Every parameter by name, flat, on the host.
    fn params(model: &Clip<CpuAutodiff>) -> BTreeMap<String, (Vec<f32>, usize)> {
        struct Read(BTreeMap<String, (Vec<f32>, usize)>);
        impl ParamVisitor<CpuAutodiff> for Read {
            fn visit<const D: usize>(
                &mut self,
                key: &str,
                layout: Layout,
                param: &mut Param<Tensor<CpuAutodiff, D>>,
            ) -> Result<()> {
                let v = param.val().into_data().into_vec::<f32>().unwrap();
                self.0.insert(key.into(), (v, group_of(key, layout, D)));
                Ok(())
            }
        }
        let mut r = Read(BTreeMap::new());
        visit_params(&mut model.clone(), &mut r).unwrap();
        r.0
    }

    /// Gradients for every parameter but `skip`, seeded.
    fn grads(model: &Clip<CpuAutodiff>, seed: u64, skip: &str) -> NamedGrads<Cpu> {
        <Cpu as Backend>::seed(&Default::default(), seed);
        let mut g = BTreeMap::new();
        for (k, (v, _)) in params(model) {
            if k != skip {
                let t = Tensor::random(
                    [v.len()],
                    Distribution::Normal(0.0, 1.0),
                    &Default::default(),
                );
                g.insert(k, t);
            }
        }
        NamedGrads::from_map(g)
    }

    /// torch's AdamW for one parameter, in f32 as the flat update computes it.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        p: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
        t: i32,
        lr: f64,
        wd: f64,
        c: AdamWConfig,
    ) {
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        for i in 0..p.len() {
            if wd > 0.0 {
                p[i] *= (1.0 - lr * wd) as f32;
            }
            m[i] += (g[i] - m[i]) * (1.0 - c.beta1) as f32;
            v[i] = v[i] * c.beta2 as f32 + g[i].powi(2) * (1.0 - c.beta2) as f32;
            let denom = v[i].sqrt() / bc2_sqrt as f32 + c.eps as f32;
            p[i] -= m[i] / denom * (lr / bc1) as f32;
        }
    }

    /// Both forms of the update (foreach on, off; foreach with gradients packed by
    /// the step or not) are torch's per-parameter AdamW: four steps, one of them
    /// with a parameter lacking its gradient (it keeps its value and moments), the
    /// moments saved and restored into a fresh optimiser half-way, and the logit
    /// scale changed from outside before the last (open_clip's clamp).
    #[test]
    fn both_update_forms_are_the_per_parameter_formula() {
        for (foreach, packed) in [(false, false), (true, false), (true, true)] {
            check_against_reference(TINY, foreach, packed);
        }
    }

    /// EVA02's q, k and v weights are one parameter here and three in PyTorch, and
    /// its SwiGLU's two input layers one here: the saved moments are the parts under
    /// timm's keys and shapes, and a resume from them continues as the formula does.
    #[test]
    fn eva02_stacked_params_update_and_resume_under_pytorch_keys() {
        for (foreach, packed) in [(false, false), (true, true)] {
            check_against_reference(TINY_EVA02, foreach, packed);
        }
    }

    fn check_against_reference(arch: &str, foreach: bool, packed: bool) {
        let c = AdamWConfig {
            weight_decay: 0.2,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
        };
        let mut model = tiny(arch);
        let mut expected = params(&model);
        let mut moments: BTreeMap<String, (Vec<f32>, Vec<f32>)> = expected
            .iter()
            .map(|(k, (v, _))| (k.clone(), (vec![0.0; v.len()], vec![0.0; v.len()])))
            .collect();
        let mut steps: BTreeMap<String, i32> = BTreeMap::new();
        let fresh = || AdamW::<Cpu> {
            foreach,
            ..AdamW::new(c)
        };
        let mut opt = fresh();
        // A parameter without a gradient at step 2 (EVA02's: the stacked q/k/v).
        let skip = match arch {
            TINY_EVA02 => "visual.trunk.blocks.0.attn.qkv.weight",
            _ => "visual.ln_pre.weight",
        };
        for (step, lr) in [(1u64, 1e-2), (2, 5e-3), (3, 2e-3), (4, 1e-3)] {
            let mut g = grads(&model, step, if step == 2 { skip } else { "" });
            if packed {
                assert!(g.pack(opt.layout(&model, &g).unwrap()));
            }
            if step == 3 {
                // Resume: a fresh optimiser from the saved moments.
                let sd = opt.state_dict(&model).unwrap();
                if arch == TINY_EVA02 {
                    let attn = "visual.trunk.blocks.0.attn";
                    let w = sd
                        .get(&format!("exp_avg.{attn}.q_proj.bias"))
                        .unwrap()
                        .shape[0];
                    for part in ["q", "k", "v"] {
                        let key = format!("exp_avg_sq.{attn}.{part}_proj.weight");
                        let t = sd.get(&key).unwrap_or_else(|| panic!("{key} saved"));
                        assert_eq!(t.shape, [w, w], "{key}");
                    }
                    assert!(!sd.contains(&format!("exp_avg.{attn}.qkv.weight")));
                    // SwiGLU's packed input layer: timm's two layers, biases included.
                    let mlp = "visual.trunk.blocks.0.mlp";
                    let h = sd.get(&format!("exp_avg.{mlp}.fc2.weight")).unwrap().shape[1];
                    for part in ["g", "x"] {
                        let key = format!("exp_avg.{mlp}.fc1_{part}");
                        let shape =
                            |p: &str| sd.get(&format!("{key}.{p}")).map(|t| t.shape.clone());
                        assert_eq!(shape("weight"), Some(vec![h, w]), "{key}.weight");
                        assert_eq!(shape("bias"), Some(vec![h]), "{key}.bias");
                    }
                    assert!(!sd.contains(&format!("exp_avg.{mlp}.fc1.bias")));
                }
                opt = fresh();
                opt.load_state_dict(&model, sd, 2, &Default::default())
                    .unwrap();
            }
            opt.update(&mut model, &g, lr, c.beta1).unwrap();
            for (k, (p, group)) in expected.iter_mut() {
                let Some(gk) = g.get(k) else { continue };
                let gv = gk.clone().into_data().into_vec::<f32>().unwrap();
                let (m, v) = moments.get_mut(k).unwrap();
                let t = steps.entry(k.clone()).or_insert(0);
                *t += 1;
                // The shared step counter is what bias-corrects (PyTorch's per-parameter
                // `step` equals it while every parameter has a gradient each step).
                let wd = if *group == 0 { c.weight_decay } else { 0.0 };
                reference(p, m, v, &gv, step as i32, lr, wd, c);
            }
            if step == 3 {
                // A change from outside, as open_clip's clamp makes: the next update
                // (the same layout as this one's, so a group of many keeps its
                // values) starts from it.
                let v = Tensor::from_floats([1.5], &Default::default());
                model.logit_scale = Param::initialized(model.logit_scale.id, v.require_grad());
                expected.get_mut("logit_scale").unwrap().0 = vec![1.5];
            }
        }
        let got = params(&model);
        for (k, (want, _)) in &expected {
            let (have, _) = &got[k];
            for (a, b) in have.iter().zip(want) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "foreach {foreach}, packed {packed}, {k}: {a} vs {b}"
                );
            }
        }
        assert_eq!(steps[skip], 3);
    }
}
