//! Token ids identical to `open_clip.get_tokenizer('ViT-B-32')` on 12,000 real
//! Wikipedia sentences plus awkward cases (fixture: tests/peer/tokenizer_fixtures.py).

use std::io::{BufRead, BufReader};

use realsyn_model::clip::tokenizer::{CONTEXT_LENGTH, ClipTokenizer};

fn fixture() -> Vec<(String, Vec<i32>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/tokenizer/open_clip_ids.jsonl.gz"
    );
    let file = std::fs::File::open(path).expect("tokenizer fixture present");
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let ids = v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap() as i32)
                .collect();
            (v["text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

#[test]
fn ids_match_open_clip_on_every_fixture_text() {
    let tok = ClipTokenizer::new();
    let cases = fixture();
    assert!(cases.len() >= 12_000, "fixture holds {} texts", cases.len());
    let texts: Vec<&str> = cases.iter().map(|(t, _)| t.as_str()).collect();
    let rows = tok.tokenize_batch(&texts);
    let mut mismatches = Vec::new();
    for ((text, expected), row) in cases.iter().zip(&rows) {
        assert_eq!(row.len(), CONTEXT_LENGTH);
        let mut padded = expected.clone();
        padded.resize(CONTEXT_LENGTH, 0);
        if *row != padded {
            mismatches.push(format!(
                "{text:?}\n  open_clip: {expected:?}\n  realsyn:   {row:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} texts differ; first ones:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn special_tokens_and_truncation() {
    let tok = ClipTokenizer::new();
    assert_eq!(tok.vocab_size(), 49408);
    assert_eq!((tok.sot_id(), tok.eot_id()), (49406, 49407));
    let empty = tok.tokenize("");
    assert_eq!(&empty[..3], &[49406, 49407, 0]);
    let long = tok.tokenize(&"word ".repeat(300));
    assert_eq!(long.len(), 77);
    assert_eq!(long[76], 49407, "EOT is forced into the last slot");
    assert!(long[..76].iter().all(|&t| t != 0));
    assert_eq!(
        tok.decode(&tok.encode("A photo of a cat.")).trim(),
        "a photo of a cat ."
    );
}
