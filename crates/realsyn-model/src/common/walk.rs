//! The state-dict walk every model's weights go through: a model lists each of its
//! parameters once with its PyTorch key and layout (`ParamVisitor`), and loading
//! (`load_strict`) and exporting (`export`) are two visitors over that one walk, so
//! they cannot disagree.

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::state_dict::{HostTensor, StateDict};

/// How a PyTorch tensor maps onto the Burn parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Same shape and order.
    Same,
    /// `nn.Linear.weight` is [out, in]; Burn's `Linear` stores [in, out].
    LinearWeight,
    /// A 0-d tensor in PyTorch, shape [1] here.
    Scalar,
}

impl Layout {
    /// PyTorch tensor -> the Burn parameter's layout.
    pub fn torch_to_burn(self, t: HostTensor) -> Result<HostTensor> {
        match self {
            Layout::Same => Ok(t),
            Layout::LinearWeight => t.transposed(),
            Layout::Scalar => Ok(HostTensor::new(vec![1], t.data)),
        }
    }

    /// The PyTorch shape of a Burn parameter of shape `burn` (for messages and listings).
    pub fn torch_shape(self, burn: &[usize]) -> Vec<usize> {
        match self {
            Layout::Same => burn.to_vec(),
            Layout::LinearWeight => burn.iter().rev().copied().collect(),
            Layout::Scalar => Vec::new(),
        }
    }

    /// Burn parameter -> the PyTorch tensor's layout (inverse of `torch_to_burn`).
    pub fn burn_to_torch(self, t: HostTensor) -> Result<HostTensor> {
        match self {
            Layout::Same => Ok(t),
            Layout::LinearWeight => t.transposed(),
            Layout::Scalar => Ok(HostTensor::new(vec![], t.data)),
        }
    }
}

/// A stacked parameter's value (Burn's layout) as the `n` PyTorch tensors
/// [`ParamVisitor::visit_stacked`] names.
pub fn unstack(layout: Layout, t: HostTensor, n: usize) -> Result<Vec<HostTensor>> {
    layout.burn_to_torch(t)?.chunk_rows(n)
}

/// The PyTorch shape of each of the `n` parts of a stacked parameter of (Burn) shape
/// `burn`: a slice of its rows in PyTorch's layout.
pub fn part_shape(layout: Layout, burn: &[usize], n: usize) -> Vec<usize> {
    let mut shape = layout.torch_shape(burn);
    shape[0] /= n;
    shape
}

/// The PyTorch tensors of a stacked parameter as its value in Burn's layout.
pub fn stack(layout: Layout, parts: &[HostTensor]) -> Result<HostTensor> {
    layout.torch_to_burn(HostTensor::cat_rows(parts)?)
}

pub trait ParamVisitor<B: Backend> {
    fn visit<const D: usize>(
        &mut self,
        key: &str,
        layout: Layout,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<()>;

    /// A parameter PyTorch keeps as several tensors (`parts`, their keys) that,
    /// stacked along their first axis, are the parameter in `layout`: timm's separate
    /// q, k and v projections of EVA02 and its SwiGLU's two input projections, each
    /// held here as one matrix so a step multiplies by it as it is rather than joining
    /// them each time. Visitors that read or write no PyTorch tensor (gradients, the
    /// optimiser) see one parameter under `key`.
    fn visit_stacked<const D: usize>(
        &mut self,
        key: &str,
        parts: &[&str],
        layout: Layout,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<()> {
        let _ = parts;
        self.visit(key, layout, param)
    }
}

/// A linear layer: `{key}.weight` in `weight_layout` (torch `nn.Linear` is
/// `LinearWeight`; GPT-2's `Conv1D` is already [in, out], `Same`), then the bias.
pub fn visit_linear_as<B: Backend, V: ParamVisitor<B>>(
    v: &mut V,
    key: &str,
    l: &mut Linear<B>,
    weight_layout: Layout,
) -> Result<()> {
    v.visit(&format!("{key}.weight"), weight_layout, &mut l.weight)?;
    if let Some(bias) = l.bias.as_mut() {
        v.visit(&format!("{key}.bias"), Layout::Same, bias)?;
    }
    Ok(())
}

/// A torch `nn.Linear`: `{key}.weight` ([out, in]), then the bias.
pub fn visit_linear<B: Backend, V: ParamVisitor<B>>(
    v: &mut V,
    key: &str,
    l: &mut Linear<B>,
) -> Result<()> {
    visit_linear_as(v, key, l, Layout::LinearWeight)
}

/// Torch `nn.Linear`s (`parts`, their module keys) held as one layer `key` whose
/// outputs are theirs in order: weights and biases each stacked.
pub fn visit_stacked_linear<B: Backend, V: ParamVisitor<B>>(
    v: &mut V,
    key: &str,
    parts: &[&str],
    l: &mut Linear<B>,
) -> Result<()> {
    let keys =
        |param: &str| -> Vec<String> { parts.iter().map(|p| format!("{p}.{param}")).collect() };
    let weights = keys("weight");
    let weights: Vec<&str> = weights.iter().map(String::as_str).collect();
    let weight = format!("{key}.weight");
    v.visit_stacked(&weight, &weights, Layout::LinearWeight, &mut l.weight)?;
    if let Some(bias) = l.bias.as_mut() {
        let biases = keys("bias");
        let biases: Vec<&str> = biases.iter().map(String::as_str).collect();
        v.visit_stacked(&format!("{key}.bias"), &biases, Layout::Same, bias)?;
    }
    Ok(())
}

pub fn visit_ln<B: Backend, V: ParamVisitor<B>>(
    v: &mut V,
    key: &str,
    ln: &mut LayerNorm<B>,
) -> Result<()> {
    v.visit(&format!("{key}.weight"), Layout::Same, &mut ln.gamma)?;
    if let Some(beta) = ln.beta.as_mut() {
        v.visit(&format!("{key}.bias"), Layout::Same, beta)?;
    }
    Ok(())
}

/// Moves each visited tensor out of the state dict into the parameter, checking its
/// shape (shared by every model's loader).
pub struct Loader<'a, B: Backend> {
    sd: &'a mut StateDict,
    device: B::Device,
}

impl<B: Backend> ParamVisitor<B> for Loader<'_, B> {
    fn visit<const D: usize>(
        &mut self,
        key: &str,
        layout: Layout,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<()> {
        let expected = param.lazy_shape().to_vec();
        let t = self.take(key, layout, &expected)?;
        let file_shape = t.shape.clone();
        let t = layout.torch_to_burn(t)?;
        if t.shape != expected {
            bail!(
                "{}",
                wrong_shape(key, &file_shape, &layout.torch_shape(&expected))
            );
        }
        self.set(param, t);
        Ok(())
    }

    fn visit_stacked<const D: usize>(
        &mut self,
        _key: &str,
        parts: &[&str],
        layout: Layout,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<()> {
        let part = part_shape(layout, &param.lazy_shape(), parts.len());
        let mut taken = Vec::with_capacity(parts.len());
        for key in parts {
            let t = self.take(key, Layout::Same, &part)?;
            if t.shape != part {
                bail!("{}", wrong_shape(key, &t.shape, &part));
            }
            taken.push(t);
        }
        self.set(param, stack(layout, &taken)?);
        Ok(())
    }
}

impl<B: Backend> Loader<'_, B> {
    /// The tensor under `key`; `expected` (the parameter's shape in `layout`) for the
    /// message when it is missing.
    fn take(&mut self, key: &str, layout: Layout, expected: &[usize]) -> Result<HostTensor> {
        // Shapes in messages are PyTorch's, as the user's file and open_clip print them.
        self.sd.tensors.remove(key).ok_or_else(|| {
            anyhow!(
                "{key}: missing from the weights (the model config expects shape {:?})",
                layout.torch_shape(expected)
            )
        })
    }

    fn set<const D: usize>(&self, param: &mut Param<Tensor<B, D>>, t: HostTensor) {
        let tensor = Tensor::from_data(TensorData::new(t.data, t.shape), &self.device);
        *param = Param::initialized(param.id, tensor);
    }
}

fn wrong_shape(key: &str, file: &[usize], torch_expected: &[usize]) -> String {
    format!("{key}: weights have shape {file:?}, the model config expects {torch_expected:?}")
}

/// Run `walk` with a loader over `sd`; like `load_state_dict(strict=True)`, every
/// tensor must be taken (leftovers are an error naming them).
pub fn load_strict<B: Backend>(
    mut sd: StateDict,
    device: &B::Device,
    walk: impl FnOnce(&mut Loader<'_, B>) -> Result<()>,
) -> Result<()> {
    walk(&mut Loader {
        sd: &mut sd,
        device: device.clone(),
    })?;
    if !sd.is_empty() {
        let extra: Vec<&String> = sd.keys().take(8).collect();
        bail!(
            "weights contain {} tensors this model does not use, e.g. {extra:?}",
            sd.len()
        );
    }
    Ok(())
}

/// Copies each visited parameter into a state dict in PyTorch's layout.
pub struct Exporter {
    sd: StateDict,
}

impl<B: Backend> ParamVisitor<B> for Exporter {
    fn visit<const D: usize>(
        &mut self,
        key: &str,
        layout: Layout,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<()> {
        let host =
            HostTensor::from_data(param.val().into_data()).with_context(|| key.to_string())?;
        let t = layout.burn_to_torch(host)?;
        self.sd.insert(key, t);
        Ok(())
    }

    fn visit_stacked<const D: usize>(
        &mut self,
        key: &str,
        parts: &[&str],
        layout: Layout,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<()> {
        let host =
            HostTensor::from_data(param.val().into_data()).with_context(|| key.to_string())?;
        for (k, part) in parts.iter().zip(unstack(layout, host, parts.len())?) {
            self.sd.insert(*k, part);
        }
        Ok(())
    }
}

/// Run `walk` with an exporter: the visited parameters as a PyTorch-layout state dict.
pub fn export(walk: impl FnOnce(&mut Exporter) -> Result<()>) -> Result<StateDict> {
    let mut exporter = Exporter {
        sd: StateDict::default(),
    };
    walk(&mut exporter)?;
    Ok(exporter.sd)
}

/// The shapes a model's parameters have in PyTorch's layout, by key, read off the walk
/// without allocating a parameter (Burn's parameters are lazy until used): parameter
/// counts and architecture matching for models too large to build, such as EVA02-E.
pub struct ShapeLister {
    pub shapes: Vec<(String, Vec<usize>)>,
}

impl<B: Backend> ParamVisitor<B> for ShapeLister {
    fn visit<const D: usize>(
        &mut self,
        key: &str,
        layout: Layout,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<()> {
        let shape = layout.torch_shape(&param.lazy_shape());
        self.shapes.push((key.to_string(), shape));
        Ok(())
    }

    fn visit_stacked<const D: usize>(
        &mut self,
        _key: &str,
        parts: &[&str],
        layout: Layout,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<()> {
        let shape = part_shape(layout, &param.lazy_shape(), parts.len());
        (self.shapes).extend(parts.iter().map(|k| (k.to_string(), shape.clone())));
        Ok(())
    }
}

/// Run `walk` with a [`ShapeLister`].
pub fn param_shapes(
    walk: impl FnOnce(&mut ShapeLister) -> Result<()>,
) -> Result<Vec<(String, Vec<usize>)>> {
    let mut lister = ShapeLister { shapes: Vec::new() };
    walk(&mut lister)?;
    Ok(lister.shapes)
}
