//! The CAT filter on hand-labelled sentences (tests/fixtures/cat/labelled.tsv: 20 to
//! keep, 20 to drop), with Debian's wordnet-base as the lexicon.

use std::path::{Path, PathBuf};

use realsyn_builder::filter::cat::{CatFilter, WORDNET_DIR};

#[test]
fn agrees_with_hand_labels() {
    assert!(
        Path::new(WORDNET_DIR).join("index.verb").exists(),
        "run scripts/setup-system.sh (wordnet-base)"
    );
    let cat = CatFilter::load(Path::new(WORDNET_DIR)).unwrap();
    let labelled = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cat/labelled.tsv"),
    )
    .unwrap();
    let (mut tp, mut tn, mut fp, mut fn_) = (0, 0, 0, 0);
    let mut wrong = Vec::new();
    for line in labelled.lines().filter(|l| !l.starts_with('#')) {
        let (label, sentence) = line.split_once('\t').unwrap();
        let want = label == "1";
        let got = cat.judge(sentence);
        match (want, got.keep()) {
            (true, true) => tp += 1,
            (false, false) => tn += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
        }
        if want != got.keep() {
            wrong.push(format!(
                "{sentence} -> {:?} complexity {} action {:?}",
                got.tags, got.complexity, got.action
            ));
        }
    }
    let accuracy = (tp + tn) as f64 / (tp + tn + fp + fn_) as f64;
    println!(
        "CAT: accuracy {accuracy:.3} (keep: {tp} right, {fn_} wrong; drop: {tn} right, {fp} wrong)"
    );
    for w in &wrong {
        println!("  {w}");
    }
    assert!(
        accuracy >= 0.85,
        "accuracy {accuracy:.3}:\n{}",
        wrong.join("\n")
    );
}
