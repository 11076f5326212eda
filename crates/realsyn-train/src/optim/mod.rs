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
//! (`foreach`) all parameters of a weight-decay group at once, the moments in one
//! flat buffer per group and the gradients concatenated, so a step is about a dozen
//! element-wise ops per group plus two per parameter instead of fourteen per
//! parameter (4,228 for ViT-B/32's 302 tensors): each op is a kernel launch with a
//! host-side cost, and the CUDA step showed a large per-step constant
//! (docs/performance.md, "GPU"). On the CPU a loop over parameters: there the flat
//! buffers made a ViT-B/32 step 2.4 s slower (13.2 vs 10.8 s, batch 32) and 550 MB
//! larger (each op writes a fresh 600 MB buffer). Both are one code
//! path (a group of one parameter is not copied), and each element sees the same
//! arithmetic in the same order, so the results are identical.
//!
//! On the CPU backend a group of one parameter is updated in one pass
//! (`fused_cpu`, torch's `fused=True`): the same f32 operations, without fourteen
//! tensor ops' passes and buffers. Each group's step is computed when its first
//! parameter is visited and applied at once, while its memory is still in cache.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use realsyn_model::Clip;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::batch::to_scalar;

mod fused_cpu;
use realsyn_model::common::state_dict::{HostTensor, StateDict};
use realsyn_model::common::walk::{Layout, ParamVisitor};

/// Flattened gradients by open_clip parameter name.
pub struct NamedGrads<B: Backend> {
    pub grads: BTreeMap<String, Tensor<B, 1>>,
}

impl<B: Backend> Default for NamedGrads<B> {
    fn default() -> Self {
        Self {
            grads: BTreeMap::new(),
        }
    }
}

impl<B: Backend> NamedGrads<B> {
    /// Collect the gradients of every parameter of `model` from a backward pass.
    pub fn collect<AB: AutodiffBackend<InnerBackend = B>>(
        model: &Clip<AB>,
        grads: &AB::Gradients,
    ) -> Result<Self> {
        struct Collector<'a, AB: AutodiffBackend> {
            grads: &'a AB::Gradients,
            out: BTreeMap<String, Tensor<AB::InnerBackend, 1>>,
        }
        impl<AB: AutodiffBackend> ParamVisitor<AB> for Collector<'_, AB> {
            fn visit<const D: usize>(
                &mut self,
                key: &str,
                _: Layout,
                param: &mut Param<Tensor<AB, D>>,
            ) -> Result<()> {
                if let Some(g) = param.val().grad(self.grads) {
                    let n = g.shape().num_elements();
                    self.out.insert(key.to_string(), g.reshape([n]));
                }
                Ok(())
            }
        }
        let mut c = Collector::<AB> {
            grads,
            out: BTreeMap::new(),
        };
        visit_params(&mut model.clone(), &mut c)?;
        Ok(Self { grads: c.out })
    }

    /// Sum another set of gradients into this one (micro-batches, devices).
    pub fn accumulate(&mut self, other: NamedGrads<B>) {
        for (k, g) in other.grads {
            let sum = match self.grads.remove(&k) {
                Some(acc) => acc + g,
                None => g,
            };
            self.grads.insert(k, sum);
        }
    }

    /// Move every gradient to `device` (the reduce target).
    pub fn move_to(&mut self, device: &B::Device) {
        for g in self.grads.values_mut() {
            *g = g.clone().to_device(device);
        }
    }

    /// The global L2 norm over all gradients (f64 on the host).
    pub fn global_norm(&self) -> f64 {
        let total: Option<Tensor<B, 1>> = self
            .grads
            .values()
            .map(|g| g.clone().powi_scalar(2).sum())
            .reduce(|a, b| a + b);
        total.map_or(0.0, |t| to_scalar(t).sqrt())
    }

    /// `torch.nn.utils.clip_grad_norm_`: scale by `max / (norm + 1e-6)` when above.
    pub fn clip_norm(&mut self, max_norm: f64, norm: f64) {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in self.grads.values_mut() {
                *g = g.clone().mul_scalar(coef);
            }
        }
    }
}

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

/// One group's moments, flat, in the order its parameters are visited.
struct FlatMoments<B: Backend> {
    /// (name, offset, length) of each parameter in the flat buffers.
    spans: Vec<(String, usize, usize)>,
    moments: Moments<B>,
}

impl<B: Backend> FlatMoments<B> {
    /// One parameter's moments (views into the flat buffers).
    fn get(&self, key: &str) -> Option<Moments<B>> {
        let &(_, off, len) = self.spans.iter().find(|(k, _, _)| k == key)?;
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
    groups: Vec<FlatMoments<B>>,
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
    pub fn update<AB: AutodiffBackend<InnerBackend = B>>(
        &mut self,
        model: &mut Clip<AB>,
        grads: &NamedGrads<B>,
        lr: f64,
        beta1: f64,
    ) -> Result<()> {
        self.step += 1;
        // Which parameters have a gradient, in visiting order, grouped.
        let mut grouping = Grouping {
            grads,
            foreach: self.foreach,
            groups: Vec::new(),
        };
        visit_params(model, &mut grouping)?;
        let layouts = grouping.groups;
        let c = self.config;
        let t = self.step as i32;
        let mut moments = self.moments_for(&layouts);
        let mut pending = Vec::with_capacity(layouts.len());
        let mut index = HashMap::new();
        for (gi, (class, spans)) in layouts.into_iter().enumerate() {
            let m = match moments.remove(&spans[0].0) {
                Some(m) => m,
                None => self.gather(&spans, &grads.grads[&spans[0].0].device()),
            };
            for (k, off, len) in &spans {
                index.insert(k.clone(), (gi, *off, *len));
            }
            pending.push(Some((class, spans, m)));
        }
        // Each group's step is computed when its first parameter is visited and
        // applied right away: with one group per parameter (the CPU default) the
        // parameter, its gradient and its moments are still in cache.
        let mut v = Apply {
            index,
            pending,
            steps: Vec::new(),
            groups: Vec::new(),
            grads,
            rule: StepRule {
                lr,
                beta1,
                beta2: c.beta2,
                eps: c.eps,
                bc1: 1.0 - beta1.powi(t),
                bc2_sqrt: (1.0 - c.beta2.powi(t)).sqrt(),
            },
            weight_decay: c.weight_decay,
        };
        visit_params(model, &mut v)?;
        self.groups = v.groups;
        Ok(())
    }

    /// The last update's moments of each new group whose layout is unchanged, keyed
    /// by the group's first parameter; the last update's other groups are parked.
    fn moments_for(
        &mut self,
        layouts: &[(usize, Vec<(String, usize, usize)>)],
    ) -> HashMap<String, Moments<B>> {
        let mut old: HashMap<String, FlatMoments<B>> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(|g| (g.spans[0].0.clone(), g))
            .collect();
        let mut kept = HashMap::new();
        for (_, spans) in layouts {
            let first = &spans[0].0;
            if old.get(first).is_some_and(|g| g.spans == *spans) {
                kept.insert(first.clone(), old.remove(first).expect("checked").moments);
            }
        }
        for g in old.into_values() {
            for (key, _, _) in &g.spans {
                let m = g.get(key).expect("a span of this group");
                self.parked.insert(key.clone(), m);
            }
        }
        kept
    }

    /// A new layout's moments from the parked ones, zeros for a parameter seen for
    /// the first time.
    fn gather(&mut self, spans: &[(String, usize, usize)], device: &B::Device) -> Moments<B> {
        let (mut avg, mut sq) = (Vec::new(), Vec::new());
        for (key, _, len) in spans {
            let m = self.parked.remove(key).unwrap_or_else(|| Moments {
                exp_avg: Tensor::zeros([*len], device),
                exp_avg_sq: Tensor::zeros([*len], device),
            });
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
                let Some(m) = self.opt.moments(key) else {
                    return Ok(());
                };
                let shape = param.val().dims();
                for (prefix, t) in [("exp_avg", &m.exp_avg), ("exp_avg_sq", &m.exp_avg_sq)] {
                    let moment = t.clone().reshape(shape).into_data();
                    let host = layout.burn_to_torch(HostTensor::from_data(moment)?)?;
                    self.sd.insert(format!("{prefix}.{key}"), host);
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
                let ka = format!("exp_avg.{key}");
                if !self.sd.contains(&ka) {
                    return Ok(());
                }
                let n = param.val().shape().num_elements();
                let mut get = |k: &str| -> Result<Tensor<AB::InnerBackend, 1>> {
                    let t = layout.torch_to_burn(self.sd.take(k)?)?;
                    if t.data.len() != n {
                        bail!("{k}: {} values, the model has {n}", t.data.len());
                    }
                    Ok(Tensor::from_data(
                        TensorData::new(t.data, [n]),
                        &self.device,
                    ))
                };
                let exp_avg = get(&ka)?;
                let exp_avg_sq = get(&format!("exp_avg_sq.{key}"))?;
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

/// A group's per-parameter tensors (gradients, moments) as one flat tensor laid
/// out by its `spans` (`flat`: aligned, so each parameter's slice is a view); a
/// group of one is not copied.
fn flat<B: Backend>(spans: &[(String, usize, usize)], parts: Vec<Tensor<B, 1>>) -> Tensor<B, 1> {
    let spans: Vec<(usize, usize)> = spans.iter().map(|(_, off, len)| (*off, *len)).collect();
    crate::flat::cat(&spans, parts)
}

/// The weight-decay class of a parameter: 0 decayed, 1 not.
fn group_of(key: &str, layout: Layout, rank: usize) -> usize {
    let torch_rank = if layout == Layout::Scalar { 0 } else { rank };
    if decays(key, torch_rank) { 0 } else { 1 }
}

/// Lays out the parameters that have a gradient as groups of spans: with `foreach`
/// one group per weight-decay class, else one group per parameter. Each group is
/// `(decay class, spans)`, in visiting order.
struct Grouping<'a, B: Backend> {
    grads: &'a NamedGrads<B>,
    foreach: bool,
    groups: Vec<(usize, Vec<(String, usize, usize)>)>,
}

impl<AB: AutodiffBackend> ParamVisitor<AB> for Grouping<'_, AB::InnerBackend> {
    fn visit<const D: usize>(
        &mut self,
        key: &str,
        layout: Layout,
        param: &mut Param<Tensor<AB, D>>,
    ) -> Result<()> {
        let Some(g) = self.grads.grads.get(key) else {
            return Ok(());
        };
        let n = param.val().shape().num_elements();
        if g.dims()[0] != n {
            bail!(
                "{key}: a gradient of {} values for {n} parameters",
                g.dims()[0]
            );
        }
        let class = group_of(key, layout, D);
        let shared = if self.foreach {
            self.groups.iter().position(|(c, _)| *c == class)
        } else {
            None
        };
        let gi = shared.unwrap_or_else(|| {
            self.groups.push((class, Vec::new()));
            self.groups.len() - 1
        });
        let spans = &mut self.groups[gi].1;
        let off = spans
            .last()
            .map_or(0, |(_, o, l)| crate::flat::next_offset(o + l));
        spans.push((key.to_string(), off, n));
        Ok(())
    }
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
}

/// `p = p * (1 - lr * wd) - step`, with each parameter's slice of its group's step,
/// the step of a group computed at the group's first parameter.
struct Apply<'a, B: Backend> {
    /// Parameter name -> (group, offset, length).
    index: HashMap<String, (usize, usize, usize)>,
    /// Per group, until its step is computed: (decay class, spans, moments).
    pending: Vec<Option<PendingGroup<B>>>,
    /// Per group: (decay class, flat step); a group of one parameter gives its step
    /// up, so it is freed as soon as it is applied.
    steps: Vec<(usize, Option<Tensor<B, 1>>)>,
    /// The groups' new moments, in group order.
    groups: Vec<FlatMoments<B>>,
    grads: &'a NamedGrads<B>,
    rule: StepRule,
    weight_decay: f64,
}

type PendingGroup<B> = (usize, Vec<(String, usize, usize)>, Moments<B>);

impl<AB: AutodiffBackend> ParamVisitor<AB> for Apply<'_, AB::InnerBackend> {
    fn visit<const D: usize>(
        &mut self,
        key: &str,
        _: Layout,
        param: &mut Param<Tensor<AB, D>>,
    ) -> Result<()> {
        let Some(&(gi, off, len)) = self.index.get(key) else {
            return Ok(()); // no gradient this step
        };
        let decay =
            |class: usize| (class == 0 && self.weight_decay > 0.0).then_some(self.weight_decay);
        if gi == self.steps.len() {
            let (class, spans, m) = self.pending[gi].take().expect("groups in visiting order");
            let g = flat(
                &spans,
                spans
                    .iter()
                    .map(|(k, _, _)| self.grads.grads[k].clone())
                    .collect(),
            );
            // A group of one parameter: the whole update in one pass where the
            // backend allows it.
            let (g, m) = if spans.len() == 1 {
                let p = param.val().inner();
                let shape = p.shape();
                match fused_cpu::step(&self.rule, decay(class), p.reshape([len]), g, m) {
                    Ok((p, moments)) => {
                        self.steps.push((class, None));
                        self.groups.push(FlatMoments { spans, moments });
                        let p = Tensor::from_inner(p.reshape(shape)).require_grad();
                        *param = Param::initialized(param.id, p);
                        return Ok(());
                    }
                    Err((_, g, m)) => (g, m),
                }
            } else {
                (g, m)
            };
            let (step, moments) = self.rule.apply(g, m);
            self.steps.push((class, Some(step)));
            self.groups.push(FlatMoments { spans, moments });
        }
        let (class, step) = &mut self.steps[gi];
        let p = param.val().inner();
        let shape = p.shape();
        let p = match decay(*class) {
            Some(wd) => p.mul_scalar(1.0 - self.rule.lr * wd),
            None => p,
        };
        let whole = step.as_ref().is_some_and(|d| d.dims()[0] == len);
        let step = match (whole, step) {
            (true, d) => d.take().expect("checked above"),
            (false, Some(d)) => d.clone().slice([off..off + len]),
            (false, None) => bail!("{key}: its step was already applied"),
        };
        let p = p - step.reshape(shape);
        *param = Param::initialized(param.id, Tensor::from_inner(p).require_grad());
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

    fn tiny() -> Clip<CpuAutodiff> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../recipes/models/fashion-mnist-tiny.json"
        );
        let cfg = ClipConfig::from_name_or_path(path).unwrap();
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
        let mut g = NamedGrads::default();
        for (k, (v, _)) in params(model) {
            if k != skip {
                let t = Tensor::random(
                    [v.len()],
                    Distribution::Normal(0.0, 1.0),
                    &Default::default(),
                );
                g.grads.insert(k, t);
            }
        }
        g
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

    /// Both forms of the update (foreach on, off) are torch's per-parameter AdamW:
    /// three steps, one of them with a parameter lacking its gradient (it keeps its
    /// value and moments), the moments saved and restored into a fresh optimiser
    /// half-way.
    #[test]
    fn both_update_forms_are_the_per_parameter_formula() {
        for foreach in [false, true] {
            check_against_reference(foreach);
        }
    }

    fn check_against_reference(foreach: bool) {
        let c = AdamWConfig {
            weight_decay: 0.2,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
        };
        let mut model = tiny();
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
        let skip = "visual.ln_pre.weight";
        for (step, lr) in [(1u64, 1e-2), (2, 5e-3), (3, 2e-3)] {
            let g = grads(&model, step, if step == 2 { skip } else { "" });
            if step == 3 {
                // Resume: a fresh optimiser from the saved moments.
                let sd = opt.state_dict(&model).unwrap();
                opt = fresh();
                opt.load_state_dict(&model, sd, 2, &Default::default())
                    .unwrap();
            }
            opt.update(&mut model, &g, lr, c.beta1).unwrap();
            for (k, (p, group)) in expected.iter_mut() {
                let Some(gk) = g.grads.get(k) else { continue };
                let gv = gk.clone().into_data().into_vec::<f32>().unwrap();
                let (m, v) = moments.get_mut(k).unwrap();
                let t = steps.entry(k.clone()).or_insert(0);
                *t += 1;
                // The shared step counter is what bias-corrects (PyTorch's per-parameter
                // `step` equals it while every parameter has a gradient each step).
                let wd = if *group == 0 { c.weight_decay } else { 0.0 };
                reference(p, m, v, &gv, step as i32, lr, wd, c);
            }
        }
        let got = params(&model);
        for (k, (want, _)) in &expected {
            let (have, _) = &got[k];
            for (a, b) in have.iter().zip(want) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "foreach {foreach}, {k}: {a} vs {b}"
                );
            }
        }
        assert_eq!(steps[skip], 2);
    }
}
