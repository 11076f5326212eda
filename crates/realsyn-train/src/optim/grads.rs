//! A step's gradients by open_clip parameter name, per parameter or packed into one
//! flat buffer.
//!
//! Packed ([`NamedGrads::pack`], what the GPU step does once per backward pass), the
//! sums over micro-batches and devices, the all-reduce, the global norm, clipping
//! and the foreach AdamW are each one or two kernels over the whole buffer, where
//! per parameter they were one or more each for ~300 parameters (about 1,600
//! kernels of a ViT-B/32 step, docs/performance.md, "GPU"). On the CPU there is no
//! launch cost to save and the copy would be a pass over every gradient, so the CPU
//! step keeps them apart.

use std::collections::BTreeMap;

use anyhow::Result;
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, Tensor};
use realsyn_model::Clip;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::batch::to_scalar;
use realsyn_model::common::walk::{Layout, ParamVisitor};

use super::fused_cpu::sum_of_squares;
use super::layout::FlatLayout;

/// Flattened gradients by open_clip parameter name.
pub struct NamedGrads<B: Backend> {
    /// Each gradient, when not packed (empty when packed).
    grads: BTreeMap<String, Tensor<B, 1>>,
    /// The one buffer all gradients live in, laid out as the optimiser's groups. A
    /// gradient is sliced out of it only when it is read ([`NamedGrads::get`]): a
    /// slice whose length is no multiple of the alignment is a copy on CubeCL
    /// (`crate::flat`), which slicing every gradient at each change of the buffer
    /// made several times a step.
    packed: Option<(FlatLayout, Tensor<B, 1>)>,
}

impl<B: Backend> Default for NamedGrads<B> {
    fn default() -> Self {
        Self::from_map(BTreeMap::new())
    }
}

impl<B: Backend> NamedGrads<B> {
    /// Per-parameter gradients by name.
    pub fn from_map(grads: BTreeMap<String, Tensor<B, 1>>) -> Self {
        Self {
            grads,
            packed: None,
        }
    }

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
        Ok(Self::from_map(c.out))
    }

    /// One gradient (when packed, a slice of the buffer).
    pub fn get(&self, name: &str) -> Option<Tensor<B, 1>> {
        match &self.packed {
            Some((layout, flat)) => {
                let (off, len) = layout.span(name)?;
                Some(flat.clone().slice(off..off + len))
            }
            None => self.grads.get(name).cloned(),
        }
    }

    /// How many elements `name`'s gradient has, without reading it.
    pub fn len_of(&self, name: &str) -> Option<usize> {
        match &self.packed {
            Some((layout, _)) => layout.span(name).map(|(_, len)| len),
            None => self.grads.get(name).map(|g| g.dims()[0]),
        }
    }

    /// `(name, gradient)` of every gradient, in name order (slices of the buffer
    /// when packed).
    pub fn gradients(&self) -> Vec<(String, Tensor<B, 1>)> {
        match &self.packed {
            Some((layout, flat)) => {
                let mut all: Vec<_> = slices(layout, flat).collect();
                all.sort_by(|a, b| a.0.cmp(&b.0));
                all
            }
            None => (self.grads.iter())
                .map(|(k, g)| (k.clone(), g.clone()))
                .collect(),
        }
    }

    /// `(name, length)` of every gradient, in name order.
    pub fn lengths(&self) -> Vec<(String, usize)> {
        match &self.packed {
            Some((layout, _)) => {
                let mut all: Vec<_> = (layout.absolute())
                    .map(|(k, _, len)| (k.to_string(), len))
                    .collect();
                all.sort();
                all
            }
            None => (self.grads.iter())
                .map(|(k, g)| (k.clone(), g.dims()[0]))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.packed {
            Some((layout, _)) => layout.absolute().count(),
            None => self.grads.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every gradient, by name, taken out (slices of the buffer when packed).
    pub fn into_map(mut self) -> BTreeMap<String, Tensor<B, 1>> {
        self.unpack();
        self.grads
    }

    /// Each gradient a slice of the packed buffer again, held by name.
    fn unpack(&mut self) {
        if let Some((layout, flat)) = self.packed.take() {
            self.grads.extend(slices(&layout, &flat));
        }
    }

    /// The packed buffer, when the gradients are packed as `layout`.
    pub fn packed_as(&self, layout: &FlatLayout) -> Option<&Tensor<B, 1>> {
        match &self.packed {
            Some((l, flat)) if l == layout => Some(flat),
            _ => None,
        }
    }

    /// The packed buffer and its layout, if packed.
    pub fn packed(&self) -> Option<(&FlatLayout, &Tensor<B, 1>)> {
        self.packed.as_ref().map(|(l, t)| (l, t))
    }

    /// Pack into one f32 buffer (the master weights' type) laid out as `layout` (a
    /// no-op when already so). A parameter of the layout without a gradient here
    /// gets zeros, what it adds to a sum (a replica's share of the logit scale is on
    /// the first replica); a gradient the layout lacks leaves everything unpacked,
    /// and `false` returned. Gradients in a narrower type (bf16 under amp_bf16) are
    /// converted as they are copied in (`flat::place`), where alone each was a cast.
    pub fn pack(&mut self, layout: FlatLayout) -> bool {
        if self.packed_as(&layout).is_some() {
            return true;
        }
        self.unpack();
        let (mut wide, mut narrow) = (Vec::new(), Vec::new());
        for (name, off, len) in layout.absolute() {
            if let Some(g) = self.grads.get(name) {
                let part = ((off, len), g.clone());
                match g.dtype() {
                    DType::F32 => wide.push(part),
                    _ => narrow.push(part),
                }
            }
        }
        if wide.len() + narrow.len() != self.grads.len() || self.grads.is_empty() {
            return false;
        }
        // One narrow type is converted as it is placed; a second one, part by part.
        if let Some(dtype) = narrow.first().map(|(_, g)| g.dtype()) {
            let (same, other): (Vec<_>, Vec<_>) =
                narrow.into_iter().partition(|(_, g)| g.dtype() == dtype);
            narrow = same;
            wide.extend(other.into_iter().map(|(span, g)| (span, to_f32(g))));
        }
        let narrowed = !narrow.is_empty();
        let (first, assigned) = if narrowed {
            (narrow, wide)
        } else {
            (wide, Vec::new())
        };
        let (spans, parts): (Vec<_>, Vec<_>) = first.into_iter().unzip();
        let mut flat = crate::flat::place(layout.buffer_len(), &spans, parts, FloatDType::F32);
        for ((off, len), g) in assigned {
            flat = flat.slice_assign(off..off + len, g);
        }
        self.set_packed(layout, flat);
        true
    }

    /// Every gradient in f32, the master weights' type (under amp_bf16 they arrive
    /// in bf16): one cast each, for gradients that are not packed.
    pub fn into_f32(mut self) -> Self {
        self.map(to_f32);
        self
    }

    /// The packed buffer and its layout taken out, leaving no gradients (so the
    /// buffer is held once); `None` (and nothing taken) when not packed.
    pub fn take_packed(&mut self) -> Option<(FlatLayout, Tensor<B, 1>)> {
        let packed = self.packed.take()?;
        self.grads.clear();
        Some(packed)
    }

    /// Replace the gradients by the packed buffer `flat`, laid out as `layout`.
    pub fn set_packed(&mut self, layout: FlatLayout, flat: Tensor<B, 1>) {
        self.grads.clear();
        self.packed = Some((layout, flat));
    }

    /// Apply `f` to every gradient (to the packed buffer alone, when packed).
    fn map(&mut self, f: impl Fn(Tensor<B, 1>) -> Tensor<B, 1>) {
        match self.packed.take() {
            Some((layout, flat)) => self.set_packed(layout, f(flat)),
            None => {
                for g in self.grads.values_mut() {
                    *g = f(g.clone());
                }
            }
        }
    }

    /// Sum another set of gradients into this one (micro-batches, devices): one
    /// addition when both are packed alike.
    pub fn accumulate(&mut self, other: NamedGrads<B>) {
        if self.is_empty() {
            *self = other;
            return;
        }
        if let (Some((mine, a)), Some((theirs, b))) = (&self.packed, &other.packed)
            && mine == theirs
        {
            let (layout, sum) = (mine.clone(), a.clone() + b.clone());
            self.set_packed(layout, sum);
            return;
        }
        // The per-parameter sums no longer live in one buffer.
        self.unpack();
        for (k, g) in other.into_map() {
            let sum = match self.grads.remove(&k) {
                Some(acc) if acc.dtype() == DType::F32 && g.dtype() == DType::F32 => acc + g,
                // Sums of bf16 gradients are taken in f32, as a cast of each to its
                // f32 master weight would have them.
                Some(acc) => to_f32(acc) + to_f32(g),
                None => g,
            };
            self.grads.insert(k, sum);
        }
    }

    /// Move every gradient to `device` (the reduce target).
    pub fn move_to(&mut self, device: &B::Device) {
        self.map(|g| g.to_device(device));
    }

    /// Divide one gradient by `divisor`.
    pub fn div_one(&mut self, name: &str, divisor: f64) {
        let Some(g) = self.get(name) else {
            return;
        };
        let divided = g.div_scalar(divisor);
        if let Some((layout, flat)) = self.packed.take() {
            let (off, len) = layout
                .span(name)
                .expect("a packed gradient is in its layout");
            self.set_packed(layout, flat.slice_assign(off..off + len, divided));
        } else {
            self.grads.insert(name.to_string(), divided);
        }
    }

    /// The global L2 norm over all gradients (f64 on the host).
    pub fn global_norm(&self) -> f64 {
        // A packed buffer's gaps are zeros, so they add nothing.
        let grads: Vec<&Tensor<B, 1>> = match &self.packed {
            Some((_, flat)) => vec![flat],
            None => self.grads.values().collect(),
        };
        // The CPU backend: one pass over each gradient, no `g²` buffers.
        let on_host: Option<Vec<f64>> = grads.iter().map(|g| sum_of_squares(g)).collect();
        if let Some(sums) = on_host {
            return sums.into_iter().sum::<f64>().sqrt();
        }
        let total = grads
            .into_iter()
            .map(|g| g.clone().powi_scalar(2).sum())
            .reduce(|a, b| a + b);
        total.map_or(0.0, |t| to_scalar(t).sqrt())
    }

    /// `torch.nn.utils.clip_grad_norm_`: scale by `max / (norm + 1e-6)` when above.
    pub fn clip_norm(&mut self, max_norm: f64, norm: f64) {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            self.map(|g| g.mul_scalar(coef));
        }
    }
}

/// Each gradient of `layout` as a slice of its packed buffer `flat`.
fn slices<'a, B: Backend>(
    layout: &'a FlatLayout,
    flat: &'a Tensor<B, 1>,
) -> impl Iterator<Item = (String, Tensor<B, 1>)> + 'a {
    (layout.absolute())
        .map(|(name, off, len)| (name.to_string(), flat.clone().slice(off..off + len)))
}

/// `g` in f32 (no kernel when it is).
fn to_f32<B: Backend>(g: Tensor<B, 1>) -> Tensor<B, 1> {
    match g.dtype() {
        DType::F32 => g,
        _ => g.cast(FloatDType::F32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Group;
    use burn::tensor::TensorData;
    use realsyn_model::backend::Cpu;

    fn t(v: &[f32]) -> Tensor<Cpu, 1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
    }

    fn host(t: impl std::borrow::Borrow<Tensor<Cpu, 1>>) -> Vec<f32> {
        t.borrow().clone().into_data().into_vec().unwrap()
    }

    /// `a` (3 values) and `b` (130) decayed, the scalar `s` alone.
    fn layout() -> FlatLayout {
        let group = |class, start, spans: &[(&str, usize, usize)]| Group {
            class,
            start,
            spans: spans
                .iter()
                .map(|(k, o, n)| (k.to_string(), *o, *n))
                .collect(),
        };
        FlatLayout {
            groups: vec![
                group(0, 0, &[("a", 0, 3), ("b", 256, 130)]),
                group(1, 512, &[("s", 0, 1)]),
            ],
        }
    }

    fn grads(names: &[&str], scale: f32) -> NamedGrads<Cpu> {
        let all = [
            ("a", vec![1.0, 2.0, 3.0]),
            ("b", (0..130).map(|i| i as f32).collect()),
            ("s", vec![4.0]),
        ];
        NamedGrads::from_map(
            all.into_iter()
                .filter(|(k, _)| names.contains(k))
                .map(|(k, v)| (k.to_string(), t(&v).mul_scalar(scale)))
                .collect(),
        )
    }

    #[test]
    fn unpacked_gradients_pack_in_name_order_for_the_all_reduce() {
        // What the NCCL all-reduce does with gradients the step left unpacked: one
        // group in name order, each gradient at an aligned offset, and after the sum
        // every gradient a slice of the summed buffer.
        let mut g = grads(&["a", "b", "s"], 1.0);
        let lengths = g.lengths();
        let layout = FlatLayout::in_order(lengths.iter().map(|(k, n)| (k.as_str(), *n)));
        let spans: Vec<_> = layout
            .absolute()
            .map(|(k, o, n)| (k.to_string(), o, n))
            .collect();
        let want = [("a", 0, 3), ("b", 256, 130), ("s", 512, 1)];
        assert_eq!(spans, want.map(|(k, o, n)| (k.to_string(), o, n)));
        assert_eq!(layout.buffer_len(), 768);
        assert!(g.pack(layout));
        let (layout, flat) = g.take_packed().expect("packed");
        assert_eq!(flat.dims(), [768]);
        g.set_packed(layout, flat.mul_scalar(2.0)); // two ranks' equal shares
        let doubled = grads(&["a", "b", "s"], 2.0);
        for (k, v) in doubled.gradients() {
            assert_eq!(host(g.get(&k).unwrap()), host(v), "{k}");
        }
        assert!(FlatLayout::in_order([]).groups.is_empty());
    }

    #[test]
    fn bf16_gradients_are_packed_and_summed_in_f32() {
        // As amp_bf16 leaves them: the weights' gradients in bf16, the logit
        // scale's in f32; values that bf16 rounds.
        let mixed = |scale: f32| {
            let mut g = grads(&["a", "b", "s"], scale).into_map();
            for k in ["a", "b"] {
                let v = g.remove(k).unwrap().add_scalar(1.0 / 3.0);
                g.insert(k.into(), v.cast(FloatDType::BF16));
            }
            NamedGrads::from_map(g)
        };
        let by_one = mixed(1.0).into_f32();
        assert!(
            by_one
                .gradients()
                .iter()
                .all(|(_, g)| g.dtype() == DType::F32)
        );
        let mut packed = mixed(1.0);
        assert!(packed.pack(layout()));
        assert_eq!(packed.packed().unwrap().1.dtype(), DType::F32);
        for (k, g) in by_one.gradients() {
            assert_eq!(host(g), host(packed.get(&k).unwrap()), "{k}");
        }
        // A replica without the logit scale: only bf16 gradients, still f32 packed.
        let mut replica = mixed(1.0).into_map();
        replica.remove("s");
        let mut replica = NamedGrads::from_map(replica);
        assert!(replica.pack(layout()));
        assert_eq!(replica.packed().unwrap().1.dtype(), DType::F32);
        assert_eq!(
            host(replica.get("b").unwrap()),
            host(by_one.get("b").unwrap())
        );
        assert_eq!(host(replica.get("s").unwrap()), vec![0.0]);
        // A sum of bf16 gradients is taken in f32 (4/3 + 7/3 rounded to bf16 each
        // sum to 3.6640625, which bf16 itself would round to 3.65625).
        let mut sum = mixed(1.0);
        sum.accumulate(mixed(2.0));
        let in_bf16 = |x: f32| host(&t(&[x]).cast(FloatDType::BF16).cast(FloatDType::F32))[0];
        let a = host(sum.get("a").unwrap())[0];
        assert_eq!(a, in_bf16(4.0 / 3.0) + in_bf16(7.0 / 3.0));
        assert_ne!(a, in_bf16(a));
        assert_eq!(sum.get("s").unwrap().dtype(), DType::F32);
    }

    /// On the CPU backend the norm is summed in f64 without a `g²` buffer: it is the
    /// norm of the values (exactly, for these integers: 1 + 4 + 9 + 0² + ... + 129² +
    /// 16 = 723,935), and within f32 rounding of the tensor ops' norm, also for
    /// gradients large enough to be split over threads and for a view.
    #[test]
    fn the_cpu_norm_sums_squares_in_one_pass() {
        let g = grads(&["a", "b", "s"], 1.0);
        assert_eq!(g.global_norm(), 723_935f64.sqrt());
        let n = 300_001usize;
        let big: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1013) as f32 / 101.3 - 5.0)
            .collect();
        let want = big.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
        let tensor_ops = to_scalar(t(&big).powi_scalar(2).sum());
        let view = t(&[&[9.0; 7][..], &big].concat()).slice(7..7 + n);
        for g in [t(&big), view] {
            let norm = NamedGrads::from_map([("w".to_string(), g)].into()).global_norm();
            assert!(
                (norm - want.sqrt()).abs() <= 1e-12 * norm,
                "{norm} vs {}",
                want.sqrt()
            );
            assert!((norm - tensor_ops.sqrt()).abs() <= 1e-5 * norm);
        }
    }

    #[test]
    fn packed_gradients_are_the_same_gradients() {
        assert_eq!(layout().buffer_len(), 768);
        let mut packed = grads(&["a", "b", "s"], 1.0);
        assert!(packed.pack(layout()));
        assert_eq!(packed.packed().unwrap().1.dims(), [768]);
        let apart = grads(&["a", "b", "s"], 1.0);
        for (k, g) in apart.gradients() {
            assert_eq!(host(g), host(packed.get(&k).unwrap()), "{k}");
        }
        assert_eq!(packed.global_norm(), apart.global_norm());

        // A replica without `s` (first) or `a` packs with zeros there and sums
        // as whole buffers.
        for missing in ["s", "a"] {
            let names: Vec<&str> = ["a", "b", "s"]
                .into_iter()
                .filter(|k| *k != missing)
                .collect();
            let mut other = grads(&names, 2.0);
            assert!(other.pack(layout()));
            assert_eq!(
                host(other.get(missing).unwrap()),
                vec![0.0; apart.get(missing).unwrap().dims()[0]]
            );
            let mut sum = grads(&["a", "b", "s"], 1.0);
            assert!(sum.pack(layout()));
            sum.accumulate(other);
            assert!(sum.packed().is_some());
            for (k, g) in apart.gradients() {
                let factor = if k == missing { 1.0 } else { 3.0 };
                assert_eq!(
                    host(sum.get(&k).unwrap()),
                    host(&g.clone().mul_scalar(factor)),
                    "{k}"
                );
            }
        }

        // One gradient divided, the buffer and its views agree.
        packed.div_one("s", 4.0);
        assert_eq!(host(packed.get("s").unwrap()), vec![1.0]);
        assert_eq!(
            host(&packed.packed().unwrap().1.clone().slice(512..513)),
            vec![1.0]
        );

        // A gradient outside the layout: nothing packed.
        let mut extra = grads(&["a", "b", "s"], 1.0);
        extra.grads.insert("c".into(), t(&[1.0]));
        assert!(!extra.pack(layout()));
        assert!(extra.packed().is_none());
        // Summing packed and unpacked falls back to per-parameter sums.
        let mut mixed = grads(&["a", "b", "s"], 1.0);
        assert!(mixed.pack(layout()));
        mixed.accumulate(grads(&["a", "b", "s"], 1.0));
        assert!(mixed.packed().is_none());
        assert_eq!(
            host(mixed.get("b").unwrap()),
            host(&apart.get("b").unwrap().clone().mul_scalar(2.0))
        );
    }
}
