use crate::kernel::activation::Activation;
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
        kernel::activation::activation(tensor, Activation::Gelu)
    }

    fn gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        kernel::activation::activation_backward(x, grad, Activation::Gelu)
    }

    // realsyn patch (PATCHES.md): one kernel each where the defaults were six and three
    // (SiLU and QuickGELU multiply by it).
    fn sigmoid(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        kernel::activation::activation(tensor, Activation::Sigmoid)
    }

    fn sigmoid_backward(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        kernel::activation::activation_backward(output, grad, Activation::Sigmoid)
    }
}
