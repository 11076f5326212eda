//! Host data -> model input tensors, shared by every caller of the model.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// Stack CHW images (each `3 * size * size` values) into `[n, 3, size, size]`.
pub fn image_batch<B: Backend>(
    images: &[Vec<f32>],
    size: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let flat: Vec<f32> = images.iter().flat_map(|i| i.iter().copied()).collect();
    Tensor::from_data(TensorData::new(flat, [images.len(), 3, size, size]), device)
}

/// Stack tokenizer rows (equal length) into `[n, context_length]` ids.
pub fn token_batch<B: Backend>(rows: &[Vec<i32>], device: &B::Device) -> Tensor<B, 2, Int> {
    let ctx = rows.first().map_or(0, Vec::len);
    let flat: Vec<i32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), ctx]), device)
}

/// The first element of a float tensor as f64 on the host (a loss, a norm, the
/// logit scale); NaN if it cannot be read.
pub fn to_scalar<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .map_or(f64::NAN, |v| v[0])
}

/// A 2-d float tensor back to host rows.
pub fn to_rows<B: Backend>(t: Tensor<B, 2>) -> (Vec<f32>, [usize; 2]) {
    let dims = t.dims();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensor");
    (data, dims)
}
