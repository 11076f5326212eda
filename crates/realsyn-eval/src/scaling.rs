//! Data scaling laws (paper appendix B.3): fit a metric to
//! `L(x) = a / ln(x - b) + c`, x = millions of training samples, by nonlinear least
//! squares, and extrapolate. (The natural log: the paper's Eq. 3 with ln reproduces
//! its 100M averages, e.g. linear probe -0.21 / ln(95.77) + 0.80 = 75.4 vs 75.8.)
//!
//! For a fixed b the model is linear in (a, c), so b is found by a 1-D search over
//! the profile residual (variable projection), then all three are refined by
//! Levenberg-Marquardt. Standard errors come from s^2 (J^T J)^-1 with
//! s^2 = RSS / (n - 3); an extrapolation's error by the delta method.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ScalingLaw {
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

impl ScalingLaw {
    pub fn eval(&self, x: f64) -> f64 {
        self.a / (x - self.b).ln() + self.c
    }

    /// d L / d (a, b, c) at x.
    fn grad(&self, x: f64) -> [f64; 3] {
        let l = (x - self.b).ln();
        [1.0 / l, self.a / (l * l * (x - self.b)), 1.0]
    }
}

/// The paper's Eq. 3.
pub const PAPER_LINEAR_PROBE: ScalingLaw = ScalingLaw {
    a: -0.21,
    b: 4.23,
    c: 0.80,
};
pub const PAPER_ZERO_SHOT: ScalingLaw = ScalingLaw {
    a: -0.30,
    b: 5.68,
    c: 0.62,
};
pub const PAPER_ROBUSTNESS: ScalingLaw = ScalingLaw {
    a: -0.60,
    b: 3.17,
    c: 0.56,
};

#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub law: ScalingLaw,
    /// Standard errors of (a, b, c); `None` with 3 points or fewer (no residual dof).
    pub stderr: Option<[f64; 3]>,
    pub rss: f64,
    pub n: usize,
    #[serde(skip)]
    cov: Option<[[f64; 3]; 3]>,
}

impl Fit {
    /// The fitted value at x and its standard error (delta method).
    pub fn predict(&self, x: f64) -> (f64, Option<f64>) {
        let g = self.law.grad(x);
        let se = self.cov.map(|c| {
            let mut v = 0.0;
            for i in 0..3 {
                for j in 0..3 {
                    v += g[i] * c[i][j] * g[j];
                }
            }
            v.max(0.0).sqrt()
        });
        (self.law.eval(x), se)
    }
}

/// Least-squares (a, c) for a fixed b, and the residual sum of squares.
fn profile(xs: &[f64], ys: &[f64], b: f64) -> (ScalingLaw, f64) {
    let u: Vec<f64> = xs.iter().map(|x| 1.0 / (x - b).ln()).collect();
    let n = xs.len() as f64;
    let (mu, my) = (u.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let suu: f64 = u.iter().map(|v| (v - mu).powi(2)).sum();
    let suy: f64 = u.iter().zip(ys).map(|(v, y)| (v - mu) * (y - my)).sum();
    let a = if suu > 0.0 { suy / suu } else { 0.0 };
    let law = ScalingLaw {
        a,
        b,
        c: my - a * mu,
    };
    (law, rss(&law, xs, ys))
}

fn rss(law: &ScalingLaw, xs: &[f64], ys: &[f64]) -> f64 {
    xs.iter()
        .zip(ys)
        .map(|(x, y)| (y - law.eval(*x)).powi(2))
        .sum()
}

/// Fit `L(x) = a / ln(x - b) + c` to the points (at least 3, x distinct). `b` is kept
/// below `min(x) - 1` so that every log is positive.
pub fn fit(xs: &[f64], ys: &[f64]) -> anyhow::Result<Fit> {
    anyhow::ensure!(xs.len() == ys.len(), "as many x as y");
    anyhow::ensure!(
        xs.len() >= 3,
        "a 3-parameter law needs at least 3 points (got {})",
        xs.len()
    );
    let xmin = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let b_max = xmin - 1.0 - 1e-9;
    // b on a grid dense near its upper limit (where the curve bends), then golden
    // section around the best grid point.
    let span = 100.0 * xmin.abs().max(1.0);
    let grid: Vec<f64> = (0..=2000)
        .map(|i| b_max - span * (i as f64 / 2000.0).powi(3))
        .collect();
    let k = (0..grid.len())
        .min_by(|&i, &j| {
            profile(xs, ys, grid[i])
                .1
                .total_cmp(&profile(xs, ys, grid[j]).1)
        })
        .unwrap();
    let (mut lo, mut hi) = (grid[(k + 1).min(grid.len() - 1)], grid[k.saturating_sub(1)]);
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..200 {
        let (m1, m2) = (hi - phi * (hi - lo), lo + phi * (hi - lo));
        if profile(xs, ys, m1).1 < profile(xs, ys, m2).1 {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    let mut law = profile(xs, ys, (lo + hi) / 2.0).0;
    // Levenberg-Marquardt polish on all three parameters.
    let mut lambda = 1e-3;
    let mut cur = rss(&law, xs, ys);
    for _ in 0..200 {
        let (jtj, jtr) = normal_equations(&law, xs, ys);
        let mut a = jtj;
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += lambda * jtj[i][i].max(1e-12);
        }
        let Some(delta) = solve3(a, jtr) else { break };
        let trial = ScalingLaw {
            a: law.a + delta[0],
            b: (law.b + delta[1]).min(b_max),
            c: law.c + delta[2],
        };
        let r = rss(&trial, xs, ys);
        if r < cur {
            let done = (cur - r) <= 1e-15 * cur.max(1e-300);
            law = trial;
            cur = r;
            lambda = (lambda / 3.0).max(1e-12);
            if done {
                break;
            }
        } else {
            lambda *= 4.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    let n = xs.len();
    let cov = (n > 3).then(|| {
        let s2 = cur / (n - 3) as f64;
        invert3(normal_equations(&law, xs, ys).0).map(|m| m.map(|row| row.map(|v| v * s2)))
    });
    let cov = cov.flatten();
    Ok(Fit {
        law,
        stderr: cov.map(|c| [c[0][0].sqrt(), c[1][1].sqrt(), c[2][2].sqrt()]),
        rss: cur,
        n,
        cov,
    })
}

/// (J^T J, J^T r) at `law`.
fn normal_equations(law: &ScalingLaw, xs: &[f64], ys: &[f64]) -> ([[f64; 3]; 3], [f64; 3]) {
    let mut jtj = [[0.0; 3]; 3];
    let mut jtr = [0.0; 3];
    for (x, y) in xs.iter().zip(ys) {
        let g = law.grad(*x);
        let r = y - law.eval(*x);
        for i in 0..3 {
            jtr[i] += g[i] * r;
            for j in 0..3 {
                jtj[i][j] += g[i] * g[j];
            }
        }
    }
    (jtj, jtr)
}

fn det3(m: [[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn invert3(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let d = det3(m);
    if d.abs() < 1e-300 || !d.is_finite() {
        return None;
    }
    let mut inv = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let (r1, r2) = ((j + 1) % 3, (j + 2) % 3);
            let (c1, c2) = ((i + 1) % 3, (i + 2) % 3);
            inv[i][j] = (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / d;
        }
    }
    Some(inv)
}

fn solve3(m: [[f64; 3]; 3], v: [f64; 3]) -> Option<[f64; 3]> {
    let inv = invert3(m)?;
    Some([0, 1, 2].map(|i| (0..3).map(|j| inv[i][j] * v[j]).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const XS: [f64; 7] = [12.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0];

    #[test]
    fn recovers_the_papers_eq3_from_points_on_its_curves() {
        for law in [PAPER_LINEAR_PROBE, PAPER_ZERO_SHOT, PAPER_ROBUSTNESS] {
            let ys: Vec<f64> = XS.iter().map(|&x| law.eval(x)).collect();
            let f = fit(&XS, &ys).unwrap();
            for (got, want) in [(f.law.a, law.a), (f.law.b, law.b), (f.law.c, law.c)] {
                assert!((got - want).abs() < 1e-4, "{:?} vs {law:?}", f.law);
            }
            assert!((f.predict(100.0).0 - law.eval(100.0)).abs() < 1e-6);
        }
    }

    #[test]
    fn the_inverse_3x3_is_an_inverse() {
        let m = [[4.0, 1.0, 2.0], [1.0, 3.0, 0.5], [2.0, 0.5, 5.0]];
        let inv = invert3(m).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| m[i][k] * inv[k][j]).sum();
                assert!((v - (i == j) as u8 as f64).abs() < 1e-12);
            }
        }
    }
}

/// One metric's points, fit and extrapolation, drawn as a panel: points, the fitted
/// curve over the data range, and its extrapolation (dashed) up to `to`.
pub fn panel(metric: &str, xs: &[f64], ys: &[f64], f: &Fit, to: f64) -> realsyn_data::plot::Panel {
    use realsyn_data::plot::{PALETTE, Panel, Series, Style};
    let xmax = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let xmin = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let curve = |a: f64, b: f64| -> Vec<(f64, f64)> {
        (0..=60)
            .map(|i| a + (b - a) * i as f64 / 60.0)
            .map(|x| (x, f.law.eval(x)))
            .collect()
    };
    let mut series = vec![
        Series {
            name: "runs".into(),
            color: PALETTE[0],
            style: Style::Points,
            points: xs.iter().copied().zip(ys.iter().copied()).collect(),
        },
        Series {
            name: format!("{:.2}/ln(x-{:.2})+{:.2}", f.law.a, f.law.b, f.law.c),
            color: PALETTE[1],
            style: Style::Line,
            points: curve(xmin, xmax),
        },
    ];
    if to > xmax {
        series.push(Series {
            name: format!("extrapolation to {to}M: {:.3}", f.law.eval(to)),
            color: PALETTE[1],
            style: Style::Dashed,
            points: curve(xmax, to),
        });
    }
    Panel {
        title: metric.to_string(),
        x_label: "training samples (millions)".into(),
        y_label: metric.to_string(),
        series,
    }
}
