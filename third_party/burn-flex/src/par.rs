//! realsyn patch (PATCHES.md): elementwise kernels and sum reductions split over
//! rayon's threads.
//!
//! Upstream runs every elementwise op, the broadcast patterns of layer norm and the
//! N-d contiguous copy on the calling thread. In a CLIP training step on 2 cores that
//! left about half the wall time on one core while the other waited for the next
//! GEMM. Chunks are large enough (128 KB of f32) that small tensors stay on one thread.
//!
//! The element loops (`update`, `update2`, `fill`, `fill2`) are compiled once per
//! x86-64 vector level and the widest the CPU has is picked at run time (fifth
//! round): the crate is built for baseline x86-64, where a closure such as GELU's
//! (a polynomial erf and exp) ran 4 lanes wide or not vectorised at all.

use core::mem::MaybeUninit;

/// Elements per task. Tensors under two chunks are not split.
pub(crate) const CHUNK: usize = 1 << 15;

#[cfg(feature = "rayon")]
#[inline]
fn split(len: usize) -> bool {
    len >= 2 * CHUNK && rayon::current_num_threads() > 1
}

/// The length of the chunks (a multiple of `unit`) that `len` elements, each `weight`
/// elements of work, are split into over the threads; `None`: they stay on this one.
#[cfg(feature = "rayon")]
#[inline]
fn chunk_len(len: usize, unit: usize, weight: usize) -> Option<usize> {
    (split(len.saturating_mul(weight)) && len >= 2 * unit)
        .then(|| CHUNK.div_ceil(weight).div_ceil(unit) * unit)
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
    if let Some(per) = chunk_len(dst.len(), unit, weight) {
        use rayon::prelude::*;
        dst.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, c)| f(i * per, c));
        return;
    }
    f(0, dst)
}

/// Defines `fn $name` whose body is compiled three times on x86-64 with `std`: for
/// AVX-512 (x86-64-v4), for AVX2 + FMA (v3) and for the baseline, calling the widest
/// one this CPU runs (`is_x86_feature_detected!` caches its answer; one check per
/// chunk). The body is `#[inline(always)]` into each copy, and the closures it calls
/// are inlined with it, so they are vectorised at that copy's width. Elsewhere the
/// baseline copy alone is built. Not macerator's `#[with_simd]` (which the crate uses
/// for its hand-written SIMD kernels): tried for these loops, its AVX-512 copy left
/// GELU's closure a scalar loop (the arguments travel through a struct), and
/// EVA02-B/16's forward pass took 1.73 s instead of 1.53 s.
macro_rules! widest {
    ($(#[$m:meta])* $vis:vis fn $name:ident[$($gen:tt)*]($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[inline]
        $vis fn $name<$($gen)*>($($a: $t),*) {
            #[inline(always)]
            fn body<$($gen)*>($($a: $t),*) $body
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
                unsafe fn v4<$($gen)*>($($a: $t),*) {
                    body($($a),*)
                }
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn v3<$($gen)*>($($a: $t),*) {
                    body($($a),*)
                }
                if $crate::par::has_x86_64_v4() {
                    // SAFETY: this CPU has every feature `v4` was compiled for.
                    return unsafe { v4($($a),*) };
                }
                if $crate::par::has_x86_64_v3() {
                    // SAFETY: as above, for `v3`.
                    return unsafe { v3($($a),*) };
                }
            }
            body($($a),*)
        }
    };
}

pub(crate) use widest;

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[inline]
pub(crate) fn has_x86_64_v4() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && has_x86_64_v3()
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[inline]
pub(crate) fn has_x86_64_v3() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

widest! {
    /// `x = op(x)` for each element.
    pub(crate) fn update[E: Copy, Op: Fn(E) -> E](dst: &mut [E], op: &Op) {
        for x in dst.iter_mut() {
            *x = op(*x);
        }
    }
}

widest! {
    /// `l = op(l, r)` for each pair of elements.
    pub(crate) fn update2[E: Copy, R: Copy, Op: Fn(E, R) -> E](dst: &mut [E], src: &[R], op: &Op) {
        for (l, &r) in dst.iter_mut().zip(src) {
            *l = op(*l, r);
        }
    }
}

widest! {
    /// `out[i] = op(src[i])`.
    pub(crate) fn fill[E: Copy, R, Op: Fn(E) -> R](out: &mut [MaybeUninit<R>], src: &[E], op: &Op) {
        for (o, &x) in out.iter_mut().zip(src) {
            o.write(op(x));
        }
    }
}

widest! {
    /// `out[i] = op(a[i], b[i])`.
    pub(crate) fn fill2[E: Copy, R, Op: Fn(E, E) -> R](
        out: &mut [MaybeUninit<R>],
        a: &[E],
        b: &[E],
        op: &Op,
    ) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            o.write(op(x, y));
        }
    }
}

widest! {
    /// Row by row (`bias.len()` elements each):
    /// `out[r, j] = op(a[r, j], bias[j], b[r, j])`.
    pub(crate) fn fill_rows[Op: Fn(f32, f32, f32) -> f32](
        out: &mut [MaybeUninit<f32>],
        a: &[f32],
        bias: &[f32],
        b: &[f32],
        op: &Op,
    ) {
        let d = bias.len();
        let rows = out.chunks_exact_mut(d).zip(a.chunks_exact(d)).zip(b.chunks_exact(d));
        for ((o, a), b) in rows {
            for (((o, &x), &c), &y) in o.iter_mut().zip(a).zip(bias).zip(b) {
                o.write(op(x, c, y));
            }
        }
    }
}

/// `out[r, j] = op(a[r, j], bias[j], b[r, j])` into a new `Vec`, `a` and `b` of whole
/// rows of `bias.len()`, split over the threads by rows.
pub(crate) fn map_rows<Op>(a: &[f32], bias: &[f32], b: &[f32], op: Op) -> alloc::vec::Vec<f32>
where
    Op: Fn(f32, f32, f32) -> f32 + Sync + Send,
{
    debug_assert!(a.len() == b.len() && a.len() % bias.len().max(1) == 0);
    collect(a.len(), bias.len(), |start, out| {
        let end = start + out.len();
        fill_rows(out, &a[start..end], bias, &b[start..end], &op)
    })
}

/// `dst[r, j] = op(a[r, j], bias[j], dst[r, j])` in place, `a` and `dst` of whole
/// rows of `bias.len()`, split over the threads by rows.
pub(crate) fn update_rows<Op>(dst: &mut [f32], a: &[f32], bias: &[f32], op: Op)
where
    Op: Fn(f32, f32, f32) -> f32 + Sync + Send,
{
    debug_assert!(a.len() == dst.len() && a.len() % bias.len().max(1) == 0);
    chunks_mut(dst, bias.len(), |start, out| {
        update_rows_chunk(out, &a[start..start + out.len()], bias, &op)
    })
}

widest! {
    /// Row by row (`bias.len()` elements each): `out[r, j] = op(a[r, j], bias[j],
    /// out[r, j])`.
    fn update_rows_chunk[Op: Fn(f32, f32, f32) -> f32](
        out: &mut [f32],
        a: &[f32],
        bias: &[f32],
        op: &Op,
    ) {
        let d = bias.len();
        for (o, a) in out.chunks_exact_mut(d).zip(a.chunks_exact(d)) {
            for ((o, &x), &c) in o.iter_mut().zip(a).zip(bias) {
                *o = op(x, c, *o);
            }
        }
    }
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
    collect(src.len(), 1, |start, out| fill(out, &src[start..], &op))
}

/// `out[i] = op(a[i], b[i])` into a new `Vec`.
pub(crate) fn map2<E: Copy + Sync, R: Send, Op>(a: &[E], b: &[E], op: Op) -> alloc::vec::Vec<R>
where
    Op: Fn(E, E) -> R + Sync + Send,
{
    debug_assert_eq!(a.len(), b.len());
    collect(a.len(), 1, |start, out| {
        fill2(out, &a[start..], &b[start..], &op)
    })
}

/// Where row `row` (in row-major order over the outer dimensions `shape`, with
/// `strides`) of a view starting at `offset` starts in its storage.
#[inline]
pub(crate) fn row_start(offset: isize, shape: &[usize], strides: &[isize], row: usize) -> isize {
    let (mut rest, mut at) = (row, offset);
    for k in (0..shape.len()).rev() {
        at += (rest % shape[k]) as isize * strides[k];
        rest /= shape[k];
    }
    at
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
            let at = row_start(
                offset,
                &shape[..d - 1],
                &strides[..d - 1],
                start / inner + r,
            );
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
