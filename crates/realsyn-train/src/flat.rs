//! Many 1-d tensors as one flat buffer, each at an aligned offset, so that slicing
//! them back out costs nothing: what the foreach AdamW's groups and the NCCL
//! gradient all-reduce are built on.
//!
//! CubeCL (the GPU backends) makes a slice a view of its buffer when the slice's
//! start and the rest after it both sit at its memory alignment (512 bytes on CUDA),
//! and otherwise copies it into a new buffer, a kernel each. Packed end to end, one
//! odd length early on (the logit scale's 1) shifted every tensor after it: 199
//! copies per ViT-B/32 step in the optimiser alone (docs/performance.md, "GPU").
//! Offsets are multiples of [`ALIGN`] elements, 512 bytes in bf16 (the copy of the
//! weights the amp_bf16 forward pass reads, `AdamW::weights_in`) and 1,024 in f32.
//! A tensor whose length is a multiple of it is then a view; one whose length is not
//! still ends off the alignment and is copied each time it is sliced out (so packed
//! gradients are sliced only when read, `NamedGrads::get`): the logit scale, and in
//! EVA02-L/14 (SwiGLU hidden width 2,730) each block's SwiGLU input bias (`fc1_g`'s
//! and `fc1_x`'s, packed) and its MLP norm's two vectors. Every other length in the
//! ViT and EVA02 configs is a multiple of it.

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor, TensorPrimitive};

/// The alignment in elements: 512 bytes of bf16, CubeCL's CUDA memory alignment
/// and a multiple of its Vulkan one, whichever of f32 and bf16 a buffer holds.
pub const ALIGN: usize = 256;

/// Where a span goes after one that ends at `end`.
pub fn next_offset(end: usize) -> usize {
    end.next_multiple_of(ALIGN)
}

/// `(offset, length)` of tensors of `lengths`, laid out one after another.
pub fn spans(lengths: impl IntoIterator<Item = usize>) -> Vec<(usize, usize)> {
    let mut end = 0;
    lengths
        .into_iter()
        .map(|len| {
            let off = next_offset(end);
            end = off + len;
            (off, len)
        })
        .collect()
}

/// `parts` as one flat tensor laid out by `spans` (from [`spans`]), zeros in the
/// gaps and up to an aligned end; a single part at offset 0 is returned as it is.
pub fn cat<B: Backend>(spans: &[(usize, usize)], mut parts: Vec<Tensor<B, 1>>) -> Tensor<B, 1> {
    if parts.len() == 1 && spans[0].0 == 0 {
        return parts.pop().expect("one part");
    }
    let end = spans.last().map_or(0, |(off, len)| off + len);
    let dtype = parts[0].dtype().into();
    place(next_offset(end), spans, parts, dtype)
}

/// `parts` at `spans` in a buffer of `len` zeros of `dtype`, converted from the
/// parts' float type: the backend's `float_place` (third_party/burn-backend), on
/// CubeCL one fill and a copy kernel per 8 parts, where a fill and a copy per part
/// (and per gap, when zero tensors were concatenated between them) came before.
pub fn place<B: Backend>(
    len: usize,
    spans: &[(usize, usize)],
    parts: Vec<Tensor<B, 1>>,
    dtype: FloatDType,
) -> Tensor<B, 1> {
    let offsets: Vec<usize> = spans.iter().map(|&(off, _)| off).collect();
    let parts = parts
        .into_iter()
        .map(|p| p.into_primitive().tensor())
        .collect();
    let flat = B::float_place(parts, &offsets, len, dtype);
    Tensor::from_primitive(TensorPrimitive::Float(flat))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use realsyn_model::backend::Cpu;

    #[test]
    fn parts_sit_at_aligned_offsets_and_slice_back_out() {
        let lens = [1, 256, 130];
        let spans = spans(lens);
        assert_eq!(spans, vec![(0, 1), (256, 256), (512, 130)]);
        let device = Default::default();
        let parts: Vec<Tensor<Cpu, 1>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let v: Vec<f32> = (0..n).map(|j| (i * 1000 + j) as f32).collect();
                Tensor::from_data(TensorData::new(v, [n]), &device)
            })
            .collect();
        let flat = cat(&spans, parts.clone());
        assert_eq!(flat.dims(), [768]);
        for (&(off, len), part) in spans.iter().zip(parts) {
            let back = flat.clone().slice(off..off + len);
            assert_eq!(back.into_data(), part.into_data());
        }
        let gap = flat.slice(1..256).into_data().into_vec::<f32>().unwrap();
        assert!(gap.iter().all(|&x| x == 0.0));
    }
}
