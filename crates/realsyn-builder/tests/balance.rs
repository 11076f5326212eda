//! Semantic balance sampling (paper §3.3) on synthetic clustered image embeddings
//! with a known long tail: k-means finds the clusters, every cap is obeyed exactly
//! (smaller clusters kept whole), the variants nest, the random baseline has the
//! balanced size but the tail's shape, the band's drop fractions are what the
//! cosines say, and the same seed gives the same dataset.

use realsyn_builder::balance::{self, Band};
use realsyn_builder::cluster::{KMeansParams, kmeans, synthetic_topics, top_m};

const D: usize = 32;
/// Cluster sizes: a head and a long tail.
const SIZES: [usize; 8] = [900, 400, 160, 70, 30, 12, 5, 1];

/// Rows of `SIZES[t]` per topic t, and each row's true topic.
fn long_tail() -> (Vec<f32>, Vec<usize>) {
    let t = SIZES.len();
    let pool = synthetic_topics(SIZES[0] * t, D, t, 0.3, 7);
    let (mut x, mut truth) = (Vec::new(), Vec::new());
    let mut taken = [0usize; SIZES.len()];
    for (i, row) in pool.chunks(D).enumerate() {
        let topic = i % t;
        if taken[topic] < SIZES[topic] {
            taken[topic] += 1;
            x.extend_from_slice(row);
            truth.push(topic);
        }
    }
    (x, truth)
}

fn clusters(x: &[f32]) -> (Vec<u32>, usize) {
    let km = kmeans::train(
        x,
        D,
        &KMeansParams::new(SIZES.len()),
        &realsyn_builder::cluster::CpuSearch,
        &mut kmeans::NoCheckpoint,
    )
    .unwrap();
    (top_m(x, &km.centroids, D, 1).ids, km.k())
}

#[test]
fn caps_are_exact_nested_and_seeded() {
    let (x, truth) = long_tail();
    // The true clusters, then the ones k-means finds (random initial centroids
    // drawn from a long tail may merge small clusters; the caps hold on any).
    let truth: Vec<u32> = truth.iter().map(|&t| t as u32).collect();
    let mut sizes = balance::cluster_sizes(&truth, SIZES.len(), |_| true);
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(sizes, SIZES);
    check_caps(&truth, SIZES.len());
    let (assign, k) = clusters(&x);
    check_caps(&assign, k);
}

fn check_caps(assign: &[u32], k: usize) {
    let full = balance::cluster_sizes(assign, k, |_| true);
    let ranks = balance::cluster_ranks(assign, k, 42);
    let caps = [5usize, 20, 100];
    let mut previous: Option<Vec<bool>> = None;
    for cap in caps {
        let kept: Vec<bool> = ranks.iter().map(|&r| (r as usize) < cap).collect();
        let sizes = balance::cluster_sizes(assign, k, |i| kept[i]);
        for c in 0..k {
            assert_eq!(sizes[c], full[c].min(cap), "cluster {c} under cap {cap}");
        }
        assert_eq!(
            balance::variant_size(&ranks, cap),
            full.iter().map(|&s| s.min(cap)).sum::<usize>()
        );
        // Nested: what a smaller cap keeps, a larger one keeps.
        if let Some(p) = &previous {
            assert!(p.iter().zip(&kept).all(|(a, b)| !a || *b));
        }
        previous = Some(kept);
    }
    // Same seed, same ranks; another seed, another draw from the big clusters.
    assert_eq!(balance::cluster_ranks(assign, k, 42), ranks);
    let other = balance::cluster_ranks(assign, k, 43);
    assert_ne!(other, ranks);
    assert_eq!(
        balance::variant_size(&other, 20),
        balance::variant_size(&ranks, 20)
    );

    // The random baseline of the balanced size keeps the long tail's shape: the
    // head cluster keeps far more than the cap.
    let n20 = balance::variant_size(&ranks, 20);
    let random = balance::random_ranks(assign.len(), 9);
    let rsizes = balance::cluster_sizes(assign, k, |i| (random[i] as usize) < n20);
    assert_eq!(rsizes.iter().sum::<usize>(), n20);
    assert!(*rsizes.iter().max().unwrap() > 40, "{rsizes:?}");
    assert_eq!(balance::random_ranks(assign.len(), 9), random);
}

#[test]
fn band_reports_what_each_setting_drops() {
    // Cosines 0.40, 0.41, ..., 0.79: 40 values.
    let cosines: Vec<f32> = (0..40).map(|i| 0.40 + i as f32 * 0.01).collect();
    let paper = balance::band_effect(Band::default(), &cosines);
    // Kept: 0.51..=0.61 (11 values, with float slack at the ends).
    assert_eq!(paper.pairs, 40);
    assert!(
        (paper.below, paper.above) == (11, 18) || (paper.below, paper.above) == (11, 19),
        "{paper:?}"
    );
    let q = balance::band_effect(
        Band::Quantile {
            low: 0.1,
            high: 0.8,
        },
        &cosines,
    );
    // numpy: quantile(c, .1) = 0.439, quantile(c, .8) = 0.712.
    assert!(
        (q.low - 0.439).abs() < 1e-4 && (q.high - 0.712).abs() < 1e-4,
        "{q:?}"
    );
    assert_eq!((q.below, q.above), (4, 8));
    assert!((q.dropped_fraction - 0.3).abs() < 1e-9);
    assert_eq!(
        balance::band_effect(Band::Off, &cosines).dropped_fraction,
        0.0
    );
}
