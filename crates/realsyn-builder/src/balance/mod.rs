//! Semantic balance sampling (paper §3.3, "Semantic Balance Sampling", Fig. 5a and
//! Fig. 8): the arithmetic of the `balance` stage, apart from any file or model.
//!
//! 1. A cosine band on image vs synthetic text: pairs above the upper bound look
//!    like OCR (the text reads the image's words) and pairs below the lower bound
//!    are mismatched; both are dropped. The paper's band, [0.51, 0.61], is on
//!    EVA02-CLIP E/14-plus's scale; another encoder has its own scale, so the band
//!    may also be given as quantiles of the observed cosines (`Band::Quantile`).
//! 2. Image clusters (k-means of `crate::cluster`) over the pairs the band keeps;
//!    per cluster at most `cap` samples, drawn at random, smaller clusters whole.
//!
//! Every cap is answered by one pass: each cluster's members are put in a seeded
//! random order once (`cluster_ranks`), and the variant with cap `c` keeps the
//! members whose rank is below `c`. Variants are therefore nested (RealSyn15M ⊂
//! 30M ⊂ 100M, as the paper's are by construction) and any cap can be asked for
//! later without sampling again. The random-sampling baseline of Table 5 is the
//! same idea over the whole pool: one seeded permutation (`random_ranks`), and the
//! baseline matching a variant of n samples keeps ranks below n.

pub mod stage;

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// The paper's band on EVA02-CLIP E/14-plus cosines (§3.3).
pub const PAPER_BAND: (f32, f32) = (0.51, 0.61);
/// The paper's per-cluster caps: RealSyn15M, 30M, 100M (§3.3, Table 13).
pub const PAPER_CAPS: [usize; 3] = [20, 35, 180];
/// Pairs per image cluster (paper: 168.3M pairs into 1M clusters).
pub const PAPER_PAIRS_PER_CLUSTER: usize = 168;

/// Which cosines are kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Band {
    /// Keep `low <= cosine <= high`.
    Cosine { low: f32, high: f32 },
    /// Keep cosines between these quantiles of the observed distribution.
    Quantile { low: f64, high: f64 },
    /// Keep every pair.
    Off,
}

impl Default for Band {
    fn default() -> Self {
        Band::Cosine {
            low: PAPER_BAND.0,
            high: PAPER_BAND.1,
        }
    }
}

impl std::str::FromStr for Band {
    type Err = anyhow::Error;

    /// `0.51..0.61` (cosines), `q0.05..q0.90` (quantiles) or `off`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s == "off" {
            return Ok(Band::Off);
        }
        let Some((a, b)) = s.split_once("..") else {
            bail!("band {s:?}: write LOW..HIGH (0.51..0.61), qLOW..qHIGH (q0.05..q0.90) or off");
        };
        let band = match (a.strip_prefix('q'), b.strip_prefix('q')) {
            (Some(a), Some(b)) => Band::Quantile {
                low: a.parse()?,
                high: b.parse()?,
            },
            (None, None) => Band::Cosine {
                low: a.parse()?,
                high: b.parse()?,
            },
            _ => bail!("band {s:?}: both ends are cosines or both are quantiles (qLOW..qHIGH)"),
        };
        match band {
            Band::Quantile { low, high }
                if !(0.0..=1.0).contains(&low) || !(low..=1.0).contains(&high) =>
            {
                bail!("band {s:?}: quantiles need 0 <= low <= high <= 1")
            }
            Band::Cosine { low, high } if low > high => bail!("band {s:?}: low above high"),
            b => Ok(b),
        }
    }
}

impl std::fmt::Display for Band {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Band::Cosine { low, high } => write!(f, "{low}..{high}"),
            Band::Quantile { low, high } => write!(f, "q{low}..q{high}"),
            Band::Off => write!(f, "off"),
        }
    }
}

/// The `q`-quantile of sorted values (linear interpolation, numpy's default).
pub fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    let j = (i + 1).min(sorted.len() - 1);
    (sorted[i] as f64 + (sorted[j] as f64 - sorted[i] as f64) * frac) as f32
}

/// The cosine bounds a band means for these cosines (`Off`: ±infinity).
pub fn thresholds(band: Band, cosines: &[f32]) -> (f32, f32) {
    match band {
        Band::Cosine { low, high } => (low, high),
        Band::Off => (f32::NEG_INFINITY, f32::INFINITY),
        Band::Quantile { low, high } => {
            let mut s: Vec<f32> = cosines.iter().copied().filter(|c| c.is_finite()).collect();
            s.sort_by(f32::total_cmp);
            (quantile(&s, low), quantile(&s, high))
        }
    }
}

/// Where a cosine falls against the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Kept,
    /// Above the upper bound: OCR-like (the text reads the image's words).
    Above,
    /// Below the lower bound: mismatched.
    Below,
}

pub fn verdict(cosine: f32, (low, high): (f32, f32)) -> Verdict {
    if cosine > high {
        Verdict::Above
    } else if cosine < low || !cosine.is_finite() {
        Verdict::Below
    } else {
        Verdict::Kept
    }
}

/// What a band does to these cosines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandEffect {
    pub band: String,
    pub low: f32,
    pub high: f32,
    pub pairs: usize,
    pub above: usize,
    pub below: usize,
    /// (above + below) / pairs (the paper: about 15%).
    pub dropped_fraction: f64,
}

pub fn band_effect(band: Band, cosines: &[f32]) -> BandEffect {
    let t = thresholds(band, cosines);
    let (mut above, mut below) = (0, 0);
    for &c in cosines {
        match verdict(c, t) {
            Verdict::Above => above += 1,
            Verdict::Below => below += 1,
            Verdict::Kept => {}
        }
    }
    BandEffect {
        band: band.to_string(),
        low: t.0,
        high: t.1,
        pairs: cosines.len(),
        above,
        below,
        dropped_fraction: (above + below) as f64 / cosines.len().max(1) as f64,
    }
}

/// Each member's rank in a seeded random order of its cluster: `ranks[i]` for
/// row `i` of `assign` (its cluster id). The variant with cap `c` keeps ranks
/// below `c`. The order of a cluster depends only on the seed, the cluster id and
/// the members' row order, so a rerun (or another thread count) agrees.
pub fn cluster_ranks(assign: &[u32], k: usize, seed: u64) -> Vec<u32> {
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); k];
    for (i, &c) in assign.iter().enumerate() {
        members[c as usize].push(i as u32);
    }
    let mut ranks = vec![u32::MAX; assign.len()];
    for (c, mut m) in members.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        m.shuffle(&mut rng);
        for (r, i) in m.into_iter().enumerate() {
            ranks[i as usize] = r as u32;
        }
    }
    ranks
}

/// Each row's rank in one seeded permutation of `n` rows (the random-sampling
/// baseline: the baseline of size s keeps ranks below s).
pub fn random_ranks(n: usize, seed: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut ranks = vec![0u32; n];
    for (r, i) in order.into_iter().enumerate() {
        ranks[i as usize] = r as u32;
    }
    ranks
}

/// How many samples the variant with cap `c` keeps.
pub fn variant_size(ranks: &[u32], cap: usize) -> usize {
    ranks.iter().filter(|&&r| (r as usize) < cap).count()
}

/// Members per cluster of the rows `keep` selects.
pub fn cluster_sizes(assign: &[u32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut sizes = vec![0usize; k];
    for (i, &c) in assign.iter().enumerate() {
        if keep(i) {
            sizes[c as usize] += 1;
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_parse_and_print() {
        assert_eq!("0.51..0.61".parse::<Band>().unwrap(), Band::default());
        assert_eq!(
            "q0.05..q0.9".parse::<Band>().unwrap(),
            Band::Quantile {
                low: 0.05,
                high: 0.9
            }
        );
        assert_eq!("off".parse::<Band>().unwrap(), Band::Off);
        for bad in ["0.6..0.5", "q0.5..0.6", "q0.9..q0.1", "0.5", "q1.5..q2"] {
            assert!(bad.parse::<Band>().is_err(), "{bad}");
        }
        assert_eq!(Band::default().to_string(), "0.51..0.61");
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        // numpy.quantile([1,2,3,4], [0, .25, .5, 1]) = 1, 1.75, 2.5, 4
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&s, 0.25), 1.75);
        assert_eq!(quantile(&s, 0.5), 2.5);
        assert_eq!(quantile(&s, 1.0), 4.0);
    }

    #[test]
    fn band_counts_each_side() {
        let c = [0.40, 0.50, 0.51, 0.55, 0.61, 0.62, 0.70, f32::NAN];
        let e = band_effect(Band::default(), &c);
        assert_eq!((e.above, e.below), (2, 3));
        let q = band_effect(
            Band::Quantile {
                low: 0.0,
                high: 1.0,
            },
            &c[..7],
        );
        assert_eq!(q.above + q.below, 0);
    }
}
