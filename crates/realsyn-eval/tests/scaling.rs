//! The scaling-law fit recovers the paper's Eq. 3 from noisy points sampled on its
//! curves, and its error estimates are calibrated: over many noisy replicates the
//! true value lies within 1.96 standard errors about 95% of the time.

use realsyn_eval::scaling::{PAPER_LINEAR_PROBE, PAPER_ROBUSTNESS, PAPER_ZERO_SHOT, fit};

/// The paper's range: runs from 12M to 60M samples.
const XS: [f64; 7] = [12.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0];

/// Deterministic standard normal draws (SplitMix64 + Box-Muller).
struct Normal(u64);
impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn sample(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[test]
fn noisy_points_recover_eq3_and_the_100m_extrapolation() {
    let sigma = 0.002; // 0.2 accuracy points, the size of run-to-run noise
    for (name, law) in [
        ("linear probe", PAPER_LINEAR_PROBE),
        ("zero-shot", PAPER_ZERO_SHOT),
        ("robustness", PAPER_ROBUSTNESS),
    ] {
        let mut noise = Normal(7);
        let replicates = 300;
        let (mut covered, mut covered_c) = (0, 0);
        let mut abs_err_100 = Vec::new();
        for _ in 0..replicates {
            let ys: Vec<f64> = XS
                .iter()
                .map(|&x| law.eval(x) + sigma * noise.sample())
                .collect();
            let f = fit(&XS, &ys).unwrap();
            let (p, se) = f.predict(100.0);
            let se = se.expect("7 points leave 4 residual degrees of freedom");
            covered += ((p - law.eval(100.0)).abs() <= 1.96 * se) as usize;
            let se_c = f.stderr.unwrap()[2];
            covered_c += ((f.law.c - law.c).abs() <= 1.96 * se_c) as usize;
            abs_err_100.push((p - law.eval(100.0)).abs());
        }
        abs_err_100.sort_by(f64::total_cmp);
        let median = abs_err_100[replicates / 2];
        let rate = covered as f64 / replicates as f64;
        let rate_c = covered_c as f64 / replicates as f64;
        eprintln!(
            "{name}: median |error| at 100M {median:.4}, coverage {rate:.3} (c: {rate_c:.3})"
        );
        assert!(
            median < 0.01,
            "{name}: extrapolation to 100M off by {median} (median)"
        );
        // Student-t with 4 dof puts 88% within 1.96 s.e.; allow sampling error.
        assert!(
            (0.80..=0.99).contains(&rate),
            "{name}: 100M interval coverage {rate}"
        );
        assert!(
            (0.75..=0.99).contains(&rate_c),
            "{name}: c interval coverage {rate_c}"
        );
    }
}
