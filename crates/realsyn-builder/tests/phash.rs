//! Our perceptual hash against `imagehash.phash` (the peer) on 40 GIMP-manual images
//! (fixture: tests/peer/phash_fixture.py). The resamplers differ slightly (PIL's
//! Lanczos vs image's), so a few bits may flip; duplicates are linked at <= 4 bits.

use std::path::{Path, PathBuf};

use realsyn_builder::extract::images::{decode, phash};

#[test]
fn phash_matches_imagehash() {
    let gimp = Path::new("/usr/share/gimp/2.0/help/en");
    assert!(gimp.exists(), "run scripts/setup-system.sh (gimp-help-en)");
    let fx: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/phash/gimp.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut distances = Vec::new();
    for (rel, hex) in &fx {
        let peer = u64::from_str_radix(hex.as_str().unwrap(), 16).unwrap();
        let img = decode(&std::fs::read(gimp.join(rel)).unwrap()).unwrap();
        distances.push(((phash(&img) ^ peer).count_ones(), rel.clone()));
    }
    distances.sort();
    let exact = distances.iter().filter(|(d, _)| *d == 0).count();
    let close = distances.iter().filter(|(d, _)| *d <= 4).count();
    let mean = distances.iter().map(|(d, _)| *d as f64).sum::<f64>() / distances.len() as f64;
    println!(
        "phash vs imagehash on {}: {exact} identical, {close} within 4 bits, mean {mean:.2} bits; worst {:?}",
        distances.len(),
        distances.last()
    );
    assert_eq!(distances.len(), 40);
    assert!(close >= 38 && mean <= 1.5, "{distances:?}");
    assert!(distances.last().unwrap().0 <= 3, "{distances:?}");
}
