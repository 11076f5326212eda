//! AdamW exactly as `torch.optim.AdamW` computes it, with open_clip's parameter
//! groups, over gradients keyed by open_clip parameter names.
//!
//! Why not Burn's optimiser: its state is keyed by `ParamId` and its weight-decay
//! groups need ids; here both the decay rule (open_clip's, by name and rank) and the
//! saved state (`exp_avg.<name>` in PyTorch's layout, comparable with a torch
//! optimiser's state dict) are by name, and gradients from several micro-batches or
//! devices are summed by name before one update.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use realsyn_model::Clip;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::batch::to_scalar;
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

pub struct AdamW<B: Backend> {
    pub config: AdamWConfig,
    /// Updates applied so far (PyTorch's per-parameter `step`, shared here).
    pub step: u64,
    state: HashMap<String, Moments<B>>,
}

impl<B: Backend> AdamW<B> {
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            state: HashMap::new(),
        }
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
        let mut v = Updater {
            opt: self,
            grads,
            lr,
            beta1,
        };
        visit_params(model, &mut v)
    }

    /// State in PyTorch's layout: `exp_avg.<name>`, `exp_avg_sq.<name>`.
    pub fn state_dict<AB: AutodiffBackend<InnerBackend = B>>(
        &self,
        model: &Clip<AB>,
    ) -> Result<StateDict> {
        struct Export<'a, B: Backend> {
            state: &'a HashMap<String, Moments<B>>,
            sd: StateDict,
        }
        impl<AB: AutodiffBackend> ParamVisitor<AB> for Export<'_, AB::InnerBackend> {
            fn visit<const D: usize>(
                &mut self,
                key: &str,
                layout: Layout,
                param: &mut Param<Tensor<AB, D>>,
            ) -> Result<()> {
                let Some(m) = self.state.get(key) else {
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
            state: &self.state,
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
        self.state = state;
        self.step = step;
        Ok(())
    }
}

struct Updater<'a, B: Backend> {
    opt: &'a mut AdamW<B>,
    grads: &'a NamedGrads<B>,
    lr: f64,
    beta1: f64,
}

impl<AB: AutodiffBackend> ParamVisitor<AB> for Updater<'_, AB::InnerBackend> {
    fn visit<const D: usize>(
        &mut self,
        key: &str,
        layout: Layout,
        param: &mut Param<Tensor<AB, D>>,
    ) -> Result<()> {
        let Some(g) = self.grads.grads.get(key) else {
            return Ok(());
        };
        let c = self.opt.config;
        let (lr, b1, b2) = (self.lr, self.beta1, c.beta2);
        let p = param.val().inner();
        let shape = p.shape();
        let n = shape.num_elements();
        let p = p.reshape([n]);
        let torch_rank = if layout == Layout::Scalar { 0 } else { D };
        let wd = if decays(key, torch_rank) {
            c.weight_decay
        } else {
            0.0
        };

        let m = self.opt.state.remove(key).unwrap_or_else(|| Moments {
            exp_avg: g.zeros_like(),
            exp_avg_sq: g.zeros_like(),
        });
        // torch: p *= 1 - lr*wd; m.lerp_(g, 1-b1); v = v*b2 + (1-b2) g^2;
        // p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        let p = if wd > 0.0 {
            p.mul_scalar(1.0 - lr * wd)
        } else {
            p
        };
        let exp_avg = m.exp_avg.clone() + (g.clone() - m.exp_avg).mul_scalar(1.0 - b1);
        let exp_avg_sq =
            m.exp_avg_sq.mul_scalar(b2) + g.clone().powi_scalar(2).mul_scalar(1.0 - b2);
        let t = self.opt.step as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let denom = exp_avg_sq
            .clone()
            .sqrt()
            .div_scalar(bc2_sqrt)
            .add_scalar(c.eps);
        let p = p - (exp_avg.clone() / denom).mul_scalar(lr / bc1);
        self.opt.state.insert(
            key.to_string(),
            Moments {
                exp_avg,
                exp_avg_sq,
            },
        );
        let p: Tensor<AB::InnerBackend, D> = p.reshape(shape);
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
    use super::decays;

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
}
