//! Linear probe: multinomial logistic regression on frozen image features, the CLIP
//! paper's protocol as scikit-learn runs it.
//!
//! The objective is scikit-learn's `LogisticRegression(C=C)` (multinomial, lbfgs):
//! `C * sum_i CE_i + ||W||^2 / 2`, the intercept not penalised; here divided by `n C`
//! for conditioning (same minimiser), minimised by L-BFGS in f64. `probe` picks C on
//! a validation split carved from train (every 5th sample), refits on all of train,
//! and scores test. Deterministic: no randomness anywhere. The two products per
//! evaluation (X W and X^T (P - Y)) run as f64 GEMMs (`gemm`, the crate Burn's CPU
//! backend uses).

use rayon::prelude::*;

use crate::metrics::ClassificationMetrics;

/// Features `[n, d]` row-major with labels in `0..classes`.
pub struct Split<'a> {
    pub x: &'a [f32],
    pub y: &'a [usize],
    pub dim: usize,
}

impl Split<'_> {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

pub struct LogisticRegression {
    /// `[(dim + 1), classes]`: weights, then the intercept row.
    pub w: Vec<f64>,
    pub dim: usize,
    pub classes: usize,
    pub iterations: usize,
}

impl LogisticRegression {
    pub fn logits(&self, row: &[f32]) -> Vec<f64> {
        let c = self.classes;
        let mut z = self.w[self.dim * c..].to_vec();
        for (j, &v) in row.iter().enumerate() {
            let v = v as f64;
            for (k, zk) in z.iter_mut().enumerate() {
                *zk += v * self.w[j * c + k];
            }
        }
        z
    }

    pub fn predict(&self, row: &[f32]) -> usize {
        let z = self.logits(row);
        (0..z.len()).fold(0, |b, k| if z[k] > z[b] { k } else { b })
    }

    /// `[s.len(), classes]` decision scores of every row of `s`.
    pub fn scores(&self, s: &Split) -> Vec<f64> {
        let rows: Vec<Vec<f64>> = (0..s.len())
            .into_par_iter()
            .map(|i| self.logits(&s.x[i * s.dim..(i + 1) * s.dim]))
            .collect();
        rows.concat()
    }

    pub fn accuracy(&self, s: &Split) -> f64 {
        let ok = (0..s.len())
            .into_par_iter()
            .filter(|&i| self.predict(&s.x[i * s.dim..(i + 1) * s.dim]) == s.y[i])
            .count();
        ok as f64 / s.len().max(1) as f64
    }
}

/// `dst[m, n] = lhs[m, k] @ rhs[k, n]` with explicit strides (f64 GEMM, all cores).
#[allow(clippy::too_many_arguments)]
fn matmul(
    dst: &mut [f64],
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f64],
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: &[f64],
) {
    assert!(dst.len() >= m * n && rhs.len() >= k * n);
    // SAFETY: the asserted sizes and strides keep every access inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// Features as f64 `[n, d]`, converted once per fit.
struct Design {
    x: Vec<f64>,
    y: Vec<usize>,
    n: usize,
    d: usize,
}

/// Loss and gradient of the scaled objective at `w`: Z = X W + b, P = softmax(Z),
/// grad_W = X^T (P - Y) / n + W / (n C), grad_b = sum(P - Y) / n.
fn objective(s: &Design, classes: usize, c_reg: f64, w: &[f64]) -> (f64, Vec<f64>) {
    let (n, d, c) = (s.n, s.d, classes);
    let mut z = vec![0f64; n * c];
    matmul(&mut z, n, c, d, &s.x, d as isize, 1, &w[..d * c]);
    let bias = &w[d * c..];
    let mut loss = 0.0;
    for (i, row) in z.chunks_exact_mut(c).enumerate() {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            sum += *v;
        }
        let target = row[s.y[i]];
        loss += sum.ln() - target.ln();
        for v in row.iter_mut() {
            *v /= sum;
        }
        row[s.y[i]] -= 1.0;
    }
    let mut grad = vec![0f64; (d + 1) * c];
    // X^T as the left operand: rows along X's columns (stride 1), columns along X's rows (stride d).
    matmul(&mut grad[..d * c], d, c, n, &s.x, 1, d as isize, &z);
    for row in z.chunks_exact(c) {
        grad[d * c..].iter_mut().zip(row).for_each(|(g, p)| *g += p);
    }
    let scale = 1.0 / n as f64;
    let reg = 1.0 / (c_reg * n as f64);
    let mut f = loss * scale;
    for (i, gi) in grad.iter_mut().enumerate() {
        *gi *= scale;
        if i < d * c {
            f += 0.5 * reg * w[i] * w[i];
            *gi += reg * w[i];
        }
    }
    (f, grad)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fit with L-BFGS (memory 10, Armijo backtracking) until the gradient's max-norm
/// is below `tol` or `max_iter` iterations.
pub fn fit(
    split: &Split,
    classes: usize,
    c_reg: f64,
    max_iter: usize,
    tol: f64,
) -> LogisticRegression {
    let s = &Design {
        x: split.x.iter().map(|&v| v as f64).collect(),
        y: split.y.to_vec(),
        n: split.len(),
        d: split.dim,
    };
    let size = (s.d + 1) * classes;
    let mut w = vec![0f64; size];
    let (mut f, mut g) = objective(s, classes, c_reg, &w);
    let mut hist: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    let mut it = 0;
    while it < max_iter && g.iter().fold(0f64, |m, v| m.max(v.abs())) > tol {
        it += 1;
        // Two-loop recursion: direction = -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (sv, yv, rho) in hist.iter().rev() {
            let a = rho * dot(sv, &q);
            q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        if let Some((sv, yv, _)) = hist.last() {
            let gamma = dot(sv, yv) / dot(yv, yv);
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for ((sv, yv, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(yv, &q);
            q.iter_mut()
                .zip(sv)
                .for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            dir = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
            hist.clear();
        }
        let mut step = if hist.is_empty() {
            1.0 / g.iter().map(|v| v.abs()).sum::<f64>().max(1.0)
        } else {
            1.0
        };
        let (mut w_new, mut f_new, mut g_new);
        loop {
            w_new = w
                .iter()
                .zip(&dir)
                .map(|(a, b)| a + step * b)
                .collect::<Vec<_>>();
            (f_new, g_new) = objective(s, classes, c_reg, &w_new);
            if f_new <= f + 1e-4 * step * slope || step < 1e-20 {
                break;
            }
            step *= 0.5;
        }
        let sv: Vec<f64> = w_new.iter().zip(&w).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&sv, &yv);
        if sy > 1e-12 {
            hist.push((sv, yv, 1.0 / sy));
            if hist.len() > 10 {
                hist.remove(0);
            }
        }
        let done = (f - f_new).abs() <= 1e-12 * f.abs().max(1.0);
        (w, f, g) = (w_new, f_new, g_new);
        if done {
            break;
        }
    }
    LogisticRegression {
        w,
        dim: s.d,
        classes,
        iterations: it,
    }
}

pub struct ProbeResult {
    pub c: f64,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
    /// All test metrics (mean per-class recall, ROC AUC for two classes, ...).
    pub test: ClassificationMetrics,
}

/// The CLIP-paper protocol: choose C from `grid` on a validation split (every 5th
/// training sample), refit on all of train with it, score test.
pub fn probe(
    train: &Split,
    test: &Split,
    classes: usize,
    grid: &[f64],
    max_iter: usize,
) -> ProbeResult {
    let d = train.dim;
    let (mut tx, mut ty, mut vx, mut vy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..train.len() {
        let row = &train.x[i * d..(i + 1) * d];
        if i % 5 == 0 {
            vx.extend_from_slice(row);
            vy.push(train.y[i]);
        } else {
            tx.extend_from_slice(row);
            ty.push(train.y[i]);
        }
    }
    let (fit_split, val_split) = (
        Split {
            x: &tx,
            y: &ty,
            dim: d,
        },
        Split {
            x: &vx,
            y: &vy,
            dim: d,
        },
    );
    let mut best = (f64::NEG_INFINITY, grid[0]);
    for &c in grid {
        let acc = fit(&fit_split, classes, c, max_iter, 1e-6).accuracy(&val_split);
        if acc > best.0 {
            best = (acc, c);
        }
    }
    let model = fit(train, classes, best.1, max_iter, 1e-6);
    let metrics = ClassificationMetrics::from_scores(&model.scores(test), classes, test.y);
    ProbeResult {
        c: best.1,
        val_accuracy: best.0,
        test_accuracy: metrics.acc1,
        test: metrics,
    }
}

/// The default C grid: 10^-2 .. 10^3, as a coarse version of the CLIP paper's sweep.
pub const DEFAULT_GRID: [f64; 6] = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0];
