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
use alloc::vec::Vec;
use burn_backend::{Shape, Slice};
use core::ops::Range;

/// Gradient identifier.
pub type GradID = u64;

/// Gradients container used during the backward pass.
pub struct Gradients {
    container: TensorContainer<GradID>,
    /// realsyn patch: gradients that are zero outside the listed regions (boxes, one
    /// range per dimension), each region written by one slice's backward into zeros.
    /// A later slice whose region is disjoint from them assigns its gradient there
    /// instead of adding to it. Any [`register`](Self::register) forgets the entry.
    zero_outside: HashMap<GradID, Vec<Vec<Range<usize>>>>,
    #[cfg(feature = "distributed")]
    distributed_registration: Option<Box<dyn DistributedRegistration + Send + Sync>>,
}

impl Gradients {
    #[cfg(not(feature = "distributed"))]
    /// Creates a new gradients container.
    pub fn new<B: Backend>(root_node: NodeRef, root_tensor: FloatTensor<B>) -> Self {
        let mut gradients = Self {
            container: TensorContainer::new(),
            zero_outside: HashMap::new(),
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
            zero_outside: HashMap::new(),
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
        self.zero_outside.remove(&node_id.value);
        self.container
            .remove::<B>(&node_id.value)
            .map(|tensor| tensor.tensor())
    }

    /// realsyn patch: adds `grad`, a slice's gradient, into the region `slices` of the
    /// gradient of `node_id` (a tensor of `shape`). Upstream built zeros of the full
    /// shape, assigned the region and let `register` add the two full tensors: for
    /// attention's q, k and v cut from one packed projection, three full-size fills
    /// and two full-size additions per block. Here the first slice assigns into zeros,
    /// and a later one adds into its region in place, or just assigns there when its
    /// region is disjoint from the regions written so far (still zeros): one fill and
    /// three assignments for q, k and v.
    pub(crate) fn add_into_region<B: Backend>(
        &mut self,
        node_id: NodeId,
        shape: Shape,
        device: &B::Device,
        slices: &[Slice],
        grad: FloatTensor<B>,
    ) {
        // The region's bounding box: disjoint boxes hold disjoint elements, whatever
        // the steps.
        let region: Vec<Range<usize>> = (0..shape.num_dims())
            .map(|d| slices.get(d).map_or(0..shape[d], |s| s.to_range(shape[d])))
            .collect();
        let written = self.zero_outside.remove(&node_id.value);
        let (full, written) = match self.container.remove::<B>(&node_id.value) {
            Some(sum) => {
                let sum = sum.tensor();
                match written {
                    Some(mut written) if written.iter().all(|w| disjoint(w, &region)) => {
                        written.push(region);
                        (B::float_slice_assign(sum, slices, grad), Some(written))
                    }
                    _ => {
                        let added = B::float_add(B::float_slice(sum.clone(), slices), grad);
                        (B::float_slice_assign(sum, slices, added), None)
                    }
                }
            }
            None => {
                let zeros = B::float_zeros(shape, device, grad.dtype().into());
                (
                    B::float_slice_assign(zeros, slices, grad),
                    Some(alloc::vec![region]),
                )
            }
        };
        self.register::<B>(node_id, full);
        // A distributed registration may have replaced the gradient by a sum.
        #[cfg(feature = "distributed")]
        let written = written.filter(|_| !self.is_distributed());
        if let Some(written) = written {
            self.zero_outside.insert(node_id.value, written);
        }
    }

    /// Register a grad tensor in the container.
    ///
    /// If the tensor already exists, add both tensors together before saving the result.
    ///
    /// If the registered tensor is distributed, launches a syncing operation on the gradients.
    pub fn register<B: Backend>(&mut self, node_id: NodeId, value: FloatTensor<B>) {
        self.zero_outside.remove(&node_id.value);
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

/// Whether two boxes (one range per dimension) share no element.
fn disjoint(a: &[Range<usize>], b: &[Range<usize>]) -> bool {
    a.iter()
        .zip(b)
        .any(|(a, b)| a.end <= b.start || b.end <= a.start || a.is_empty() || b.is_empty())
}
