//! realsyn's spherical k-means against faiss-cpu on the same vectors, K, iterations
//! and subsample size (fixture: tests/peer/kmeans_fixture.py). The objective is the
//! sum over all rows of the cosine to the nearest final centroid; realsyn's must be
//! within 1% of faiss's (different random draws, so not identical centroids).

use std::path::Path;

use realsyn_builder::cluster::kmeans::{self, KMeansParams, NoCheckpoint};

fn fixture() -> (Vec<f32>, usize, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/kmeans");
    let m = realsyn_io::npy::NpyMatrix::open(&dir.join("vectors.npy")).unwrap();
    let d = m.width();
    let mut x = m.read_rows(0..m.rows());
    // As the fixture script does after its f16 round trip.
    kmeans::normalise_rows(&mut x, d);
    let json = serde_json::from_slice(&std::fs::read(dir.join("faiss.json")).unwrap()).unwrap();
    (x, d, json)
}

fn sizes(x: &[f32], c: &[f32], d: usize) -> Vec<usize> {
    let t = realsyn_builder::cluster::top_m(x, c, d, 1);
    let mut s = vec![0; c.len() / d];
    t.ids.iter().for_each(|&i| s[i as usize] += 1);
    s.sort_unstable();
    s
}

#[test]
fn flat_objective_within_one_percent_of_faiss() {
    let (x, d, f) = fixture();
    let f = &f["flat"];
    let p = KMeansParams {
        k: f["k"].as_u64().unwrap() as usize,
        iterations: f["iterations"].as_u64().unwrap() as usize,
        seed: 1234,
        max_points_per_centroid: f["max_points_per_centroid"].as_u64().unwrap() as usize,
    };
    assert!(
        x.len() / d > p.k * p.max_points_per_centroid,
        "the subsample path"
    );
    let km = kmeans::train(
        &x,
        d,
        &p,
        &realsyn_builder::cluster::CpuSearch,
        &mut NoCheckpoint,
    )
    .unwrap();
    let ours = kmeans::objective(&x, &km.centroids, d);
    let theirs = f["objective"].as_f64().unwrap();
    eprintln!(
        "flat K={}: realsyn {ours:.1}, faiss {theirs:.1} ({:+.3}%); sizes realsyn {:?} faiss {}",
        p.k,
        100.0 * (ours / theirs - 1.0),
        sizes(&x, &km.centroids, d),
        f["sizes"]
    );
    assert!((ours / theirs - 1.0).abs() < 0.01, "{ours} vs {theirs}");
}

#[test]
fn two_level_objective_within_one_percent_of_faiss() {
    let (x, d, f) = fixture();
    let f = &f["two_level"];
    let p = KMeansParams::new(f["k"].as_u64().unwrap() as usize);
    let km = kmeans::train_two_level(
        &x,
        d,
        &p,
        &realsyn_builder::cluster::CpuSearch,
        &mut NoCheckpoint,
    )
    .unwrap();
    assert_eq!(km.k(), p.k);
    let ours = kmeans::objective(&x, &km.centroids, d);
    let theirs = f["objective"].as_f64().unwrap();
    eprintln!(
        "two-level K={}: realsyn {ours:.1}, faiss {theirs:.1} ({:+.3}%)",
        p.k,
        100.0 * (ours / theirs - 1.0)
    );
    assert!((ours / theirs - 1.0).abs() < 0.01, "{ours} vs {theirs}");
}
