//! realsyn patch: attention's backward pass as one kernel per (batch, head).
//!
//! `ModuleOps::attention_backward`'s default (burn-backend, also a realsyn patch)
//! recomputes the weights from q and k with the backend's float ops: a batched
//! matmul, a masked fill, a softmax of ~6 tensor passes and ~5 more for
//! `dA = S ⊙ (dS - rowsum(S ⊙ dS))`, each writing a `[batch, heads, seq_q, seq_kv]`
//! tensor. Here each (batch, head) pair does the same five GEMMs on its own rows,
//! with the scores, their softmax and its gradient in two per-thread buffers of
//! `seq_q x seq_kv` that stay in cache, and the pairs are split over the threads as
//! the forward kernel's are.
//!
//! Used for f32 and f64 with a mask or none, causal or not; a bias or a softcap
//! (rare in CLIP-style towers), f16/bf16 and more than `SCORE_BUDGET` scores per
//! head take the default.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::AttentionModuleOptions;
use burn_std::{Bytes, Shape};
use core::mem::MaybeUninit;

use super::{
    AttentionParams, BlockGemmArgs, FlashGemm, broadcast_attn_mask_bias, for_each_head, lanes_dot,
    row_major, row_major_data, softmax_scores,
};
use crate::{FlexTensor, Layout};

/// Largest `seq_q * seq_kv` per head this kernel takes: its two score buffers per
/// thread are then at most 32 MB (f32). Longer sequences keep the default.
const SCORE_BUDGET: usize = 4 * 1024 * 1024;

/// Whether [`attention_backward`] takes these arguments (else use the default).
pub fn attention_backward_is_fused(
    query: &FlexTensor,
    key: &FlexTensor,
    has_bias: bool,
    options: &AttentionModuleOptions,
) -> bool {
    let (q, k) = (query.layout().shape(), key.layout().shape());
    matches!(query.dtype(), DType::F32 | DType::F64)
        && q.num_dims() == 4
        && k.num_dims() == 4
        && !has_bias
        && options.softcap.is_none()
        && q[2] * k[2] <= SCORE_BUDGET
}

/// Gradients of query, key and value (`[batch, heads, seq, dim]` each) of
/// `attention(query, key, value, mask, None, options)` given its output's gradient;
/// only for arguments [`attention_backward_is_fused`] accepts.
pub fn attention_backward(
    query: FlexTensor,
    key: FlexTensor,
    value: FlexTensor,
    mask: Option<FlexTensor>,
    options: AttentionModuleOptions,
    output_grad: FlexTensor,
) -> [FlexTensor; 3] {
    match query.dtype() {
        DType::F32 => backward_impl::<f32>(query, key, value, mask, options, output_grad),
        DType::F64 => backward_impl::<f64>(query, key, value, mask, options, output_grad),
        dtype => panic!("attention_backward: unsupported dtype {dtype:?}"),
    }
}

fn backward_impl<T: FlashGemm + burn_backend::Element>(
    query: FlexTensor,
    key: FlexTensor,
    value: FlexTensor,
    mask: Option<FlexTensor>,
    options: AttentionModuleOptions,
    output_grad: FlexTensor,
) -> [FlexTensor; 3] {
    let query = row_major(query);
    let key = row_major(key);
    let value = row_major(value);
    let output_grad = row_major(output_grad);
    let (batch, heads, params) =
        AttentionParams::<T>::new("attention_backward", &query, &key, &value, &options);
    let AttentionParams {
        seq_q,
        seq_kv,
        head_dim,
        val_dim,
        ..
    } = params;
    let g_shape = output_grad.layout().shape();
    assert!(
        g_shape.num_dims() == 4
            && (g_shape[0], g_shape[1], g_shape[2], g_shape[3]) == (batch, heads, seq_q, val_dim),
        "attention_backward: output_grad must be [{batch}, {heads}, {seq_q}, {val_dim}]"
    );

    let target = [batch, heads, seq_q, seq_kv];
    let mask = mask.map(|m| broadcast_attn_mask_bias(m, target, "mask"));
    let (q, k, v, g): (&[T], &[T], &[T], &[T]) = (
        row_major_data(&query),
        row_major_data(&key),
        row_major_data(&value),
        row_major_data(&output_grad),
    );
    let mask_data: Option<&[u8]> = mask.as_ref().map(|m| m.tensor.bytes());
    let (mask_batch_step, mask_head_step) = mask
        .as_ref()
        .map_or((0, 0), |m| (m.batch_step, m.head_step));
    let (q_len, k_len, v_len) = (seq_q * head_dim, seq_kv * head_dim, seq_kv * val_dim);
    let g_len = seq_q * val_dim;
    let tile = seq_q * seq_kv;

    // One pair's gradients side by side, [dq | dk | dv]; three strided views below.
    // Not zeroed: the GEMMs of `backward_head` write every element.
    let pair_len = q_len + k_len + v_len;
    let len = batch * heads * pair_len;
    let mut grads: Vec<T> = Vec::with_capacity(len);
    for_each_head(
        &mut grads.spare_capacity_mut()[..len],
        heads,
        pair_len,
        seq_kv,
        || (vec![T::zero(); tile], vec![T::zero(); tile]),
        |b, h, out, (probs, dprobs)| {
            let pair = b * heads + h;
            let mask = mask_data.map(|data| {
                let at = b * mask_batch_step + h * mask_head_step;
                &data[at..at + tile]
            });
            backward_head(
                (
                    &q[pair * q_len..][..q_len],
                    &k[pair * k_len..][..k_len],
                    &v[pair * v_len..][..v_len],
                    &g[pair * g_len..][..g_len],
                ),
                out,
                (probs, dprobs),
                &params,
                mask,
            );
        },
    );

    // SAFETY: `backward_head` wrote all of every pair's `pair_len` elements.
    unsafe { grads.set_len(len) };
    let data = Arc::new(Bytes::from_elems(grads));
    let view = |offset: usize, rows: usize, cols: usize| {
        let strides = vec![
            (heads * pair_len) as isize,
            pair_len as isize,
            cols as isize,
            1,
        ];
        let layout = Layout::new(Shape::new([batch, heads, rows, cols]), strides, offset);
        FlexTensor::from_arc(Arc::clone(&data), layout, T::dtype())
    };
    [
        view(0, seq_q, head_dim),
        view(q_len, seq_kv, head_dim),
        view(q_len + k_len, seq_kv, val_dim),
    ]
}

/// One (batch, head) pair, `out` its `[dq | dk | dv]`. With `P` the weights
/// recomputed from q and k (the forward's own `softmax_scores`) and `G` the output's
/// gradient: `dv = Pᵀ G`, `dP = G vᵀ`, `dA = scale · P ⊙ (dP - rowsum(P ⊙ dP))`,
/// `dq = dA k`, `dk = dAᵀ q`. A fully masked row has `P = 0`, hence no gradient.
fn backward_head<T: FlashGemm>(
    (q, k, v, g): (&[T], &[T], &[T], &[T]),
    out: &mut [MaybeUninit<T>],
    (probs, dprobs): (&mut [T], &mut [T]),
    p: &AttentionParams<T>,
    mask: Option<&[u8]>,
) {
    let (nq, nk, d, dv) = (p.seq_q, p.seq_kv, p.head_dim, p.val_dim);
    let (dq, rest) = out.split_at_mut(nq * d);
    let (dk, dvalue) = rest.split_at_mut(nk * d);
    // Every product writes its whole destination (`read_dst` false), so the
    // destinations may start uninitialised. Strides are (column, row): a transposed
    // operand swaps them.
    type Operand<'a, T> = (&'a [T], isize, isize);
    let gemm = |m: usize,
                n: usize,
                depth: usize,
                dst: *mut T,
                lhs: Operand<T>,
                rhs: Operand<T>,
                beta: T| unsafe {
        T::block_gemm(BlockGemmArgs {
            m,
            n,
            k: depth,
            dst,
            dst_cs: 1,
            dst_rs: n as isize,
            read_dst: false,
            lhs: lhs.0.as_ptr(),
            lhs_cs: lhs.1,
            lhs_rs: lhs.2,
            rhs: rhs.0.as_ptr(),
            rhs_cs: rhs.1,
            rhs_rs: rhs.2,
            alpha: T::zero(),
            beta,
        })
    };
    let (nk_, d_, dv_) = (nk as isize, d as isize, dv as isize);
    // P = softmax(scale · q kᵀ, masked)
    gemm(
        nq,
        nk,
        d,
        probs.as_mut_ptr(),
        (q, 1, d_),
        (k, d_, 1),
        T::one(),
    );
    softmax_scores(probs, p, (mask, None));
    // dv = Pᵀ G
    let dvalue = dvalue.as_mut_ptr().cast();
    gemm(nk, dv, nq, dvalue, (probs, nk_, 1), (g, 1, dv_), T::one());
    // dP = G vᵀ
    gemm(
        nq,
        nk,
        dv,
        dprobs.as_mut_ptr(),
        (g, 1, dv_),
        (v, dv_, 1),
        T::one(),
    );
    softmax_rows_backward(probs, dprobs, nk);
    // dq = scale · dA k, dk = scale · dAᵀ q
    let (dq, dk) = (dq.as_mut_ptr().cast(), dk.as_mut_ptr().cast());
    gemm(nq, d, nk, dq, (dprobs, 1, nk_), (k, 1, d_), p.scale);
    gemm(nk, d, nq, dk, (dprobs, nk_, 1), (q, 1, d_), p.scale);
}

crate::par::widest! {
    /// `dP ← P ⊙ (dP - rowsum(P ⊙ dP))` row by row (softmax's backward), at the CPU's
    /// vector width; the row sums add in 16 lanes (`lanes_dot`), as the forward's do.
    fn softmax_rows_backward[T: FlashGemm](probs: &[T], dprobs: &mut [T], row_len: usize) {
        for (p_row, d_row) in probs.chunks_exact(row_len).zip(dprobs.chunks_exact_mut(row_len)) {
            let dot = lanes_dot(p_row, d_row);
            for (dv, &pv) in d_row.iter_mut().zip(p_row) {
                *dv = pv * (*dv - dot);
            }
        }
    }
}
