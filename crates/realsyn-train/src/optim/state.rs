//! The optimiser's state in PyTorch's layout, as `torch.optim.AdamW`'s state dict
//! holds it: `exp_avg.<name>` and `exp_avg_sq.<name>` under open_clip's parameter
//! names and shapes (a parameter held here as one stacked tensor, such as EVA02's
//! q/k/v matrix, saved as its PyTorch parts), so a checkpoint's moments compare with
//! a torch optimiser's and a resume reads them back on any world size.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use realsyn_model::Clip;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::state_dict::{HostTensor, StateDict};
use realsyn_model::common::walk::{Layout, ParamVisitor, stack, unstack};

use super::{AdamW, Moments};

impl<B: Backend> AdamW<B> {
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
