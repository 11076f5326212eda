//! realsyn patch (PATCHES.md): a rotary embedding's rotation and its gradient, one
//! pass over `x` each, where the decomposition is a flip, two products and an
//! addition (each a pass, and the flip's strided read). f32 only; other types and
//! shapes take the trait's defaults. The same products and sum as the decomposition,
//! in the same order, so the same numbers.

use burn_backend::DType;
use burn_backend::TensorMetadata;
use burn_backend::ops::RotaryPairs;
use burn_backend::ops::rotary::{
    rotary_backward_from_float_ops, rotary_fits, rotary_from_float_ops,
};
use burn_std::{Bytes, Shape};

use crate::{Flex, FlexTensor, Layout};

pub fn rotary(
    x: FlexTensor,
    cos: FlexTensor,
    signed_sin: FlexTensor,
    pairs: RotaryPairs,
) -> FlexTensor {
    if !fits(&x, &cos, &signed_sin) {
        return rotary_from_float_ops::<Flex>(x, cos, signed_sin, pairs);
    }
    rotate(&x, &cos, &signed_sin, pairs, false)
}

pub fn rotary_backward(
    grad: FlexTensor,
    cos: FlexTensor,
    signed_sin: FlexTensor,
    pairs: RotaryPairs,
) -> FlexTensor {
    if !fits(&grad, &cos, &signed_sin) {
        return rotary_backward_from_float_ops::<Flex>(grad, cos, signed_sin, pairs);
    }
    rotate(&grad, &cos, &signed_sin, pairs, true)
}

fn fits(x: &FlexTensor, cos: &FlexTensor, signed_sin: &FlexTensor) -> bool {
    x.dtype() == DType::F32 && rotary_fits(x, cos, signed_sin)
}

/// Row by row (rows of `d` split over the threads), pair by pair: a pair `(i, j)`
/// of `x` gives `x_i c_i + x_j s_i` and `x_j c_j + x_i s_j`; the gradient, the
/// transpose, `x_i c_i + x_j s_j` and `x_j c_j + x_i s_i`.
fn rotate(
    x: &FlexTensor,
    cos: &FlexTensor,
    signed_sin: &FlexTensor,
    pairs: RotaryPairs,
    backward: bool,
) -> FlexTensor {
    let shape: Shape = x.shape();
    let n = shape.num_elements();
    let d = shape[shape.num_dims() - 1];
    let (x, cos, sin) = (contiguous(x), contiguous(cos), contiguous(signed_sin));
    let xs = x.as_slice::<f32>().expect("contiguous f32");
    let (cs, ss) = (
        cos.as_slice::<f32>().expect("contiguous f32"),
        sin.as_slice::<f32>().expect("contiguous f32"),
    );
    let table = cs.len();
    let out = crate::par::collect(n, d, |start, out| {
        for (r, o) in out.chunks_mut(d).enumerate() {
            let at = start + r * d;
            let t = at % table;
            let (x, c, s) = (&xs[at..at + d], &cs[t..t + d], &ss[t..t + d]);
            let (half, step) = match pairs {
                RotaryPairs::Interleaved => (1, 2),
                RotaryPairs::Halves => (d / 2, 1),
            };
            // i runs over each pair's first channel, j = i + half its partner.
            let firsts = (0..d).step_by(step).take(d / 2);
            for i in firsts {
                let j = i + half;
                let (si, sj) = if backward { (s[j], s[i]) } else { (s[i], s[j]) };
                o[i].write(x[i] * c[i] + x[j] * si);
                o[j].write(x[j] * c[j] + x[i] * sj);
            }
        }
    });
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(shape),
        DType::F32,
    )
}

fn contiguous(t: &FlexTensor) -> FlexTensor {
    match t.is_contiguous() {
        true => t.clone(),
        false => t.to_contiguous(),
    }
}
