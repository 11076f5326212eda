use crate::{CubeBackend, CubeRuntime, FloatElement, IntElement, element::BoolElement, kernel};
use burn_backend::ops::ActivationOps;
use burn_backend::tensor::FloatTensor;

impl<R, F, I, BT> ActivationOps<Self> for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    // realsyn patch (PATCHES.md): one kernel each, and the backward of the exact
    // GELU (the trait's default differentiates the tanh approximation).
    fn gelu(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        kernel::gelu::gelu(tensor)
    }

    fn gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        kernel::gelu::gelu_backward(x, grad)
    }
}
