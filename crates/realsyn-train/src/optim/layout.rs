//! Where every parameter with a gradient sits in the optimiser's flat buffers: one
//! definition shared by the update (its groups), the step that packs the gradients
//! (`NamedGrads::pack`) and the gradient all-reduce, so that a packed gradient is
//! handed from one to the next as views, never concatenated twice.

use anyhow::{Result, bail};
use burn::module::Param;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use realsyn_model::Clip;
use realsyn_model::clip::weights::visit_params;
use realsyn_model::common::walk::{Layout, ParamVisitor};

use super::decays;
use crate::flat::next_offset;

/// One parameter's place: its name, and its offset and length in elements within
/// its group.
pub type Span = (String, usize, usize);

/// A group updated as one: its weight-decay class and its parameters' spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// 0 decayed, 1 not (open_clip's rule, [`decays`]).
    pub class: usize,
    /// Where the group starts in the whole packed buffer (aligned).
    pub start: usize,
    /// In visiting order, offsets from `start`, each aligned (`crate::flat`).
    pub spans: Vec<Span>,
}

impl Group {
    /// Elements of the group's flat buffers: a lone parameter's own length, else up
    /// to the aligned end (`flat::cat`'s).
    pub fn buffer_len(&self) -> usize {
        match self.spans.as_slice() {
            [(_, _, n)] => *n,
            spans => {
                let (_, off, n) = spans.last().expect("a group has a parameter");
                next_offset(off + n)
            }
        }
    }
}

/// The parameters that have a gradient, grouped: with `foreach` one group per
/// weight-decay class (torch's `foreach` AdamW runs a group's tensors together),
/// else one per parameter. The groups follow each other in one buffer.
///
/// A 0-d parameter (the logit scale) is a group of its own in both forms: open_clip
/// clamps it after every step, outside the optimiser, and a group of many keeps
/// its parameters' values itself (the model holds views of them), so a change made
/// from outside would be lost; a lone parameter's value is always read back from
/// the model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlatLayout {
    pub groups: Vec<Group>,
}

impl FlatLayout {
    /// The layout of `model`'s parameters for which `has_grad` holds, in visiting
    /// order; a gradient's length must match its parameter's (`grad_len`).
    pub fn of<B: AutodiffBackend>(
        model: &Clip<B>,
        foreach: bool,
        grad_len: impl Fn(&str) -> Option<usize>,
    ) -> Result<Self> {
        struct Grouping<F> {
            grad_len: F,
            foreach: bool,
            groups: Vec<(usize, bool, Vec<Span>)>,
        }
        impl<B: AutodiffBackend, F: Fn(&str) -> Option<usize>> ParamVisitor<B> for Grouping<F> {
            fn visit<const D: usize>(
                &mut self,
                key: &str,
                layout: Layout,
                param: &mut Param<Tensor<B, D>>,
            ) -> Result<()> {
                let Some(g) = (self.grad_len)(key) else {
                    return Ok(());
                };
                let n = param.val().shape().num_elements();
                if g != n {
                    bail!("{key}: a gradient of {g} values for {n} parameters");
                }
                let class = group_of(key, layout, D);
                let alone = !self.foreach || layout == Layout::Scalar;
                let shared = (!alone)
                    .then(|| {
                        self.groups
                            .iter()
                            .position(|(c, lone, _)| *c == class && !lone)
                    })
                    .flatten();
                let gi = shared.unwrap_or_else(|| {
                    self.groups.push((class, alone, Vec::new()));
                    self.groups.len() - 1
                });
                let spans = &mut self.groups[gi].2;
                let off = spans.last().map_or(0, |(_, o, l)| next_offset(o + l));
                spans.push((key.to_string(), off, n));
                Ok(())
            }
        }
        let mut g = Grouping {
            grad_len,
            foreach,
            groups: Vec::new(),
        };
        visit_params(&mut model.clone(), &mut g)?;
        let mut start = 0;
        let groups = g
            .groups
            .into_iter()
            .map(|(class, _, spans)| {
                let group = Group {
                    class,
                    start: next_offset(start),
                    spans,
                };
                start = group.start + group.buffer_len();
                group
            })
            .collect();
        Ok(Self { groups })
    }

    /// One group of tensors of `lengths`, in the order given (decay class 0): how
    /// gradients the step did not pack (`train.foreach = false`) are packed for the
    /// one NCCL all-reduce, each a view of the sum afterwards.
    pub fn in_order<'a>(lengths: impl IntoIterator<Item = (&'a str, usize)>) -> Self {
        let (names, lens): (Vec<&str>, Vec<usize>) = lengths.into_iter().unzip();
        let spans: Vec<Span> = (names.into_iter().zip(crate::flat::spans(lens)))
            .map(|(name, (off, n))| (name.to_string(), off, n))
            .collect();
        let groups = (!spans.is_empty())
            .then(|| Group {
                class: 0,
                start: 0,
                spans,
            })
            .into_iter()
            .collect();
        Self { groups }
    }

    /// Elements of the whole packed buffer: one parameter's own length, else up to
    /// the aligned end (`flat::cat`'s).
    pub fn buffer_len(&self) -> usize {
        let spans: Vec<_> = self.absolute().collect();
        match spans.as_slice() {
            [] => 0,
            [(_, 0, n)] => *n,
            [.., (_, off, n)] => next_offset(off + n),
        }
    }

    /// `(offset, length)` of `name`'s span in whole-buffer offsets.
    pub fn span(&self, name: &str) -> Option<(usize, usize)> {
        (self.absolute())
            .find(|(k, _, _)| *k == name)
            .map(|(_, off, len)| (off, len))
    }

    /// Every span in whole-buffer offsets, group by group.
    pub fn absolute(&self) -> impl Iterator<Item = (&str, usize, usize)> {
        self.groups.iter().flat_map(|g| {
            g.spans
                .iter()
                .map(move |(k, off, n)| (k.as_str(), g.start + off, *n))
        })
    }
}

/// The weight-decay class of a parameter: 0 decayed, 1 not.
pub(super) fn group_of(key: &str, layout: Layout, rank: usize) -> usize {
    let torch_rank = if layout == Layout::Scalar { 0 } else { rank };
    if decays(key, torch_rank) { 0 } else { 1 }
}
