//! realsyn patch (PATCHES.md): elementwise kernels and sum reductions split over
//! rayon's threads.
//!
//! Upstream runs every elementwise op, the broadcast patterns of layer norm and the
//! N-d contiguous copy on the calling thread. In a CLIP training step on 2 cores that
//! left about half the wall time on one core while the other waited for the next
//! GEMM. Chunks are large enough (128 KB of f32) that small tensors stay on one thread.

use core::mem::MaybeUninit;

/// Elements per task. Tensors under two chunks are not split.
pub(crate) const CHUNK: usize = 1 << 15;

#[cfg(feature = "rayon")]
#[inline]
fn split(len: usize) -> bool {
    len >= 2 * CHUNK && rayon::current_num_threads() > 1
}

/// `f` over disjoint chunks of `dst`, each a multiple of `unit` elements long.
pub(crate) fn chunks_mut<E: Send, F>(dst: &mut [E], unit: usize, f: F)
where
    F: Fn(usize, &mut [E]) + Sync + Send,
{
    weighted_chunks_mut(dst, unit, 1, f)
}

/// `f` over disjoint chunks of `dst` (each a multiple of `unit` elements) when each
/// element costs `weight` elements of work: reductions, where one output sums many
/// inputs, split by the inputs they read rather than by their own length.
pub(crate) fn weighted_chunks_mut<E: Send, F>(dst: &mut [E], unit: usize, weight: usize, f: F)
where
    F: Fn(usize, &mut [E]) + Sync + Send,
{
    let unit = unit.max(1);
    let weight = weight.max(1);
    #[cfg(feature = "rayon")]
    if split(dst.len().saturating_mul(weight)) && dst.len() >= 2 * unit {
        use rayon::prelude::*;
        let per = CHUNK.div_ceil(weight).div_ceil(unit) * unit;
        dst.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, c)| f(i * per, c));
        return;
    }
    f(0, dst)
}

/// `f(dst_chunk, src_chunk)` over equal-length chunks of two slices.
pub(crate) fn zip_mut<E: Send, R: Sync, F>(dst: &mut [E], src: &[R], f: F)
where
    F: Fn(&mut [E], &[R]) + Sync + Send,
{
    debug_assert_eq!(dst.len(), src.len());
    chunks_mut(dst, 1, |start, c| f(c, &src[start..start + c.len()]));
}

/// A new `Vec` of `n` elements, chunk `[start, start + len)` (a multiple of `unit`)
/// written by `fill`, which must write every slot of its chunk.
pub(crate) fn collect<R: Send, F>(n: usize, unit: usize, fill: F) -> alloc::vec::Vec<R>
where
    F: Fn(usize, &mut [MaybeUninit<R>]) + Sync + Send,
{
    let mut out = alloc::vec::Vec::with_capacity(n);
    chunks_mut(&mut out.spare_capacity_mut()[..n], unit, fill);
    // SAFETY: `fill` wrote all n slots (every caller writes each slot of its chunk).
    unsafe { out.set_len(n) };
    out
}

/// `out[i] = op(src[i])` into a new `Vec`.
pub(crate) fn map<E: Copy + Sync, R: Send, Op>(src: &[E], op: Op) -> alloc::vec::Vec<R>
where
    Op: Fn(E) -> R + Sync + Send,
{
    collect(src.len(), 1, |start, out| {
        for (o, &x) in out.iter_mut().zip(&src[start..]) {
            o.write(op(x));
        }
    })
}

/// `out[i] = op(a[i], b[i])` into a new `Vec`.
pub(crate) fn map2<E: Copy + Sync, R: Send, Op>(a: &[E], b: &[E], op: Op) -> alloc::vec::Vec<R>
where
    Op: Fn(E, E) -> R + Sync + Send,
{
    debug_assert_eq!(a.len(), b.len());
    collect(a.len(), 1, |start, out| {
        for ((o, &x), &y) in out.iter_mut().zip(&a[start..]).zip(&b[start..]) {
            o.write(op(x, y));
        }
    })
}

/// Contiguous copy of a positive-stride N-d view whose innermost dimension is a run:
/// rows are copied in parallel, each row's start found from its index.
pub(crate) fn copy_rows<E: Copy + Send + Sync>(
    src: &[E],
    offset: isize,
    shape: &[usize],
    strides: &[isize],
) -> alloc::vec::Vec<E> {
    let d = shape.len();
    let (inner, inner_stride) = (shape[d - 1], strides[d - 1]);
    let n: usize = shape.iter().product();
    collect(n, inner, |start, out| {
        debug_assert_eq!(start % inner, 0);
        for (r, row) in out.chunks_mut(inner).enumerate() {
            let mut rest = start / inner + r;
            let mut at = offset;
            for k in (0..d - 1).rev() {
                at += (rest % shape[k]) as isize * strides[k];
                rest /= shape[k];
            }
            if inner_stride == 1 {
                let run = &src[at as usize..at as usize + inner];
                for (o, &x) in row.iter_mut().zip(run) {
                    o.write(x);
                }
            } else {
                for (j, o) in row.iter_mut().enumerate() {
                    o.write(src[(at + j as isize * inner_stride) as usize]);
                }
            }
        }
    })
}
