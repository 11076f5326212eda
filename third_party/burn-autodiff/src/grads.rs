use burn_backend::{
    Backend, TensorMetadata, TensorPrimitive,
    tensor::{FloatTensor, TensorContainer},
};

#[cfg(feature = "distributed")]
use crate::distributed::DistributedRegistration;
#[cfg(feature = "distributed")]
use burn_backend::distributed::DistributedBackend;

use crate::{
    NodeId,
    collections::HashMap,
    graph::{NodeRef, Requirement},
    tensor::AutodiffTensor,
};
use alloc::boxed::Box;
use alloc::vec::Vec;
use burn_backend::{Shape, Slice};
use core::any::Any;
use core::ops::Range;

/// Gradient identifier.
pub type GradID = u64;

/// Gradients container used during the backward pass.
pub struct Gradients {
    container: TensorContainer<GradID>,
    /// realsyn patch: slices' gradients of intermediate tensors, held until the
    /// tensor's own gradient is read ([`PendingSlices`]).
    pending: HashMap<GradID, PendingSlices>,
    #[cfg(feature = "distributed")]
    distributed_registration: Option<Box<dyn DistributedRegistration + Send + Sync>>,
}

impl Gradients {
    #[cfg(not(feature = "distributed"))]
    /// Creates a new gradients container.
    pub fn new<B: Backend>(root_node: NodeRef, root_tensor: FloatTensor<B>) -> Self {
        let mut gradients = Self {
            container: TensorContainer::new(),
            pending: HashMap::new(),
        };
        gradients.register::<B>(
            root_node.id,
            B::float_ones(
                root_tensor.shape(),
                &B::float_device(&root_tensor),
                root_tensor.dtype().into(),
            ),
        );
        gradients
    }

    #[cfg(feature = "distributed")]
    /// Creates a new gradients container.
    pub fn new<B: Backend>(
        root_node: NodeRef,
        root_tensor: FloatTensor<B>,
        distributed_registration: Option<Box<dyn DistributedRegistration + Send + Sync>>,
    ) -> Self {
        let mut gradients = Self {
            container: TensorContainer::new(),
            pending: HashMap::new(),
            distributed_registration,
        };
        gradients.register::<B>(
            root_node.id,
            B::float_ones(
                root_tensor.shape(),
                &B::float_device(&root_tensor),
                root_tensor.dtype().into(),
            ),
        );
        gradients
    }

    /// Consumes the gradients for a given tensor.
    ///
    /// Each tensor should be consumed exactly 1 time if its gradients are only required during the
    /// backward pass, otherwise, it may be consume multiple times.
    pub fn consume<B: Backend>(&mut self, node: &NodeRef) -> FloatTensor<B> {
        self.settle::<B>(node.id);
        match node.requirement {
            Requirement::Grad => self
                .container
                .get::<B>(&node.id.value)
                .map(|tensor| tensor.tensor())
                .expect("Can't consume the gradients before they are registered at least once."),
            Requirement::GradInBackward => self
                .container
                .remove::<B>(&node.id.value)
                .map(|tensor| tensor.tensor())
                .expect("Can't consume the gradients before they are registered at least once."),
            Requirement::None => panic!("Trying to consume the gradients for an untracked tensor"),
        }
    }

    /// Removes a grad tensor from the container.
    pub fn remove<B: Backend>(&mut self, tensor: &AutodiffTensor<B>) -> Option<FloatTensor<B>> {
        self.settle::<B>(tensor.node.id);
        self.container
            .remove::<B>(&tensor.node.id.value)
            .map(|tensor| tensor.tensor())
    }

    /// Gets a grad tensor from the container.
    pub fn get<B: Backend>(&self, tensor: &AutodiffTensor<B>) -> Option<FloatTensor<B>> {
        self.container
            .get::<B>(&tensor.node.id.value)
            .map(|tensor| tensor.tensor())
    }

    /// realsyn patch: the gradient registered so far for `node_id`, taken out, so the
    /// next [`register`](Self::register) stores without adding: for a backward step
    /// that adds it into its own result as it writes it (layer norm's input).
    pub(crate) fn take<B: Backend>(&mut self, node_id: NodeId) -> Option<FloatTensor<B>> {
        self.settle::<B>(node_id);
        self.container
            .remove::<B>(&node_id.value)
            .map(|tensor| tensor.tensor())
    }

    /// realsyn patch: adds `grad`, the gradient of the slice `slices` of `parent` (a
    /// tensor of `shape`), into the parent's gradient. Upstream built zeros of the
    /// parent's shape, assigned the region and let `register` add the two full
    /// tensors: for attention's q, k and v cut from one packed projection, three
    /// full-size fills, three assignments and two full-size additions per block. For
    /// an intermediate parent, slices of disjoint regions are held and concatenated
    /// when the parent's gradient is read ([`PendingSlices`]: one kernel for q, k and
    /// v); otherwise a slice adds into its region of the gradient so far in place, or
    /// is assigned into zeros when there is none.
    pub(crate) fn add_into_region<B: Backend>(
        &mut self,
        parent: &NodeRef,
        shape: Shape,
        device: &B::Device,
        slices: &[Slice],
        grad: FloatTensor<B>,
    ) {
        let id = parent.id;
        // Only an intermediate's gradient is read by its own backward step alone,
        // through `consume`, which settles it.
        #[cfg(feature = "distributed")]
        let may_hold = parent.requirement == Requirement::GradInBackward && !self.is_distributed();
        #[cfg(not(feature = "distributed"))]
        let may_hold = parent.requirement == Requirement::GradInBackward;
        let region = bounding_box(slices, &shape);
        if may_hold && self.container.get_mut_ref::<B>(&id.value).is_none() {
            let held = self
                .pending
                .entry(id.value)
                .or_insert_with(|| PendingSlices {
                    shape: shape.clone(),
                    parts: Vec::new(),
                });
            if held
                .parts
                .iter()
                .all(|part| disjoint(&part.region, &region))
            {
                held.parts.push(PendingSlice {
                    region,
                    slices: slices.to_vec(),
                    grad: Box::new(grad),
                });
                return;
            }
        }
        self.settle::<B>(id);
        let full = match self.container.remove::<B>(&id.value) {
            Some(sum) => {
                let sum = sum.tensor();
                let added = B::float_add(B::float_slice(sum.clone(), slices), grad);
                B::float_slice_assign(sum, slices, added)
            }
            None => {
                let zeros = B::float_zeros(shape, device, grad.dtype().into());
                B::float_slice_assign(zeros, slices, grad)
            }
        };
        self.register::<B>(id, full);
    }

    /// realsyn patch: turns the slices' gradients held for `node_id` into its
    /// gradient: one concatenation where they tile the tensor along its first
    /// dimension (attention's q, k and v), else each assigned into zeros.
    fn settle<B: Backend>(&mut self, node_id: NodeId) {
        let Some(held) = self.pending.remove(&node_id.value) else {
            return;
        };
        let PendingSlices { shape, mut parts } = held;
        parts.sort_by_key(|part| part.region.first().map_or(0, |r| r.start));
        let mut next = 0;
        let tiles = shape.num_dims() > 0
            && parts.iter().all(|part| {
                let unit_steps = part.slices.iter().all(|s| s.step == 1);
                let rest_whole = (1..shape.num_dims()).all(|d| part.region[d] == (0..shape[d]));
                let follows = part.region[0].start == next;
                next = part.region[0].end;
                unit_steps && rest_whole && follows
            })
            && next == shape[0];
        let parts = parts.into_iter().map(|part| {
            let grad = part
                .grad
                .downcast::<FloatTensor<B>>()
                .expect("a slice's gradient of this backend");
            (part.slices, *grad)
        });
        let full = if tiles {
            B::float_cat(parts.map(|(_, grad)| grad).collect(), 0)
        } else {
            let mut parts = parts.peekable();
            let first = &parts.peek().expect("a held slice").1;
            let zeros = B::float_zeros(shape, &B::float_device(first), first.dtype().into());
            parts.fold(zeros, |full, (slices, grad)| {
                B::float_slice_assign(full, &slices, grad)
            })
        };
        self.container
            .register::<B>(node_id.value, TensorPrimitive::Float(full));
    }

    /// Register a grad tensor in the container.
    ///
    /// If the tensor already exists, add both tensors together before saving the result.
    ///
    /// If the registered tensor is distributed, launches a syncing operation on the gradients.
    pub fn register<B: Backend>(&mut self, node_id: NodeId, value: FloatTensor<B>) {
        self.settle::<B>(node_id);
        let out = if let Some(tensor_old) = self.container.remove::<B>(&node_id.value) {
            B::float_add(value, tensor_old.tensor())
        } else {
            value
        };

        self.container
            .register::<B>(node_id.value, TensorPrimitive::Float(out));

        #[cfg(feature = "distributed")]
        if self.is_distributed() {
            self.distributed_registration
                .as_mut()
                .unwrap()
                .on_register(&node_id, &mut self.container);
        }
    }

    #[cfg(feature = "distributed")]
    /// returns true if the gradients are distributed across devices.
    pub fn is_distributed(&self) -> bool {
        self.distributed_registration.is_some()
    }

    #[cfg(feature = "distributed")]
    /// For distributed models, waits for collective operations to be completed so the gradients are synced across devices.
    pub fn sync_collective<B: DistributedBackend>(&self, device: &B::Device) {
        if self.is_distributed() {
            B::submit_sync_collective(device);
        }
    }
}

/// realsyn patch: the gradients of slices of one intermediate tensor, of disjoint
/// regions, with nothing else registered for it yet. Held rather than each assigned
/// into zeros (a fill and an assignment), so that when they tile the tensor, as
/// attention's q, k and v tile their packed projection, the tensor's gradient is
/// their concatenation: one kernel on the CubeCL backends.
struct PendingSlices {
    shape: Shape,
    parts: Vec<PendingSlice>,
}

struct PendingSlice {
    /// The slice's bounding box, one range per dimension.
    region: Vec<Range<usize>>,
    slices: Vec<Slice>,
    /// The slice's gradient (`FloatTensor<B>`).
    grad: Box<dyn Any + Send>,
}

/// The box a slice covers, one range per dimension: disjoint boxes hold disjoint
/// elements, whatever the steps.
fn bounding_box(slices: &[Slice], shape: &Shape) -> Vec<Range<usize>> {
    (0..shape.num_dims())
        .map(|d| slices.get(d).map_or(0..shape[d], |s| s.to_range(shape[d])))
        .collect()
}

/// Whether two boxes share no element.
fn disjoint(a: &[Range<usize>], b: &[Range<usize>]) -> bool {
    a.iter()
        .zip(b)
        .any(|(a, b)| a.end <= b.start || b.end <= a.start || a.is_empty() || b.is_empty())
}
