//! Sentence boundaries agree with NLTK 3.10's Punkt on real text: a Wikipedia excerpt
//! (gensim's test data), the GIMP manual's paragraphs, and edge cases (fixtures from
//! tests/peer/punkt_fixture.py, NLTK loaded with the same English parameters).

use std::collections::BTreeSet;
use std::path::PathBuf;

use realsyn_builder::SentenceSplitter;

fn fixture(name: &str) -> (String, Vec<(usize, usize)>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/punkt")
        .join(name);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let spans = v["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[0].as_u64().unwrap() as usize,
                s[1].as_u64().unwrap() as usize,
            )
        })
        .collect();
    (v["text"].as_str().unwrap().to_string(), spans)
}

/// Our spans in characters (NLTK's offsets), and the agreement of both boundary sets.
fn agreement(name: &str) -> (f64, f64, Vec<String>) {
    let (text, nltk) = fixture(name);
    let char_of: Vec<usize> = {
        let mut v = vec![0; text.len() + 1];
        let mut n = 0;
        for (i, c) in text.char_indices() {
            v[i] = n;
            n += 1;
            for k in 1..c.len_utf8() {
                v[i + k] = n;
            }
        }
        v[text.len()] = n;
        v
    };
    let ours: Vec<(usize, usize)> = SentenceSplitter::english()
        .spans(&text)
        .into_iter()
        .map(|r| (char_of[r.start], char_of[r.end]))
        .collect();
    let ends = |s: &[(usize, usize)]| s.iter().flat_map(|&(a, b)| [a, b]).collect::<BTreeSet<_>>();
    let (a, b) = (ends(&ours), ends(&nltk));
    let both = a.intersection(&b).count() as f64;
    let chars: Vec<char> = text.chars().collect();
    let show = |i: usize| {
        chars[i.saturating_sub(30)..(i + 30).min(chars.len())]
            .iter()
            .collect::<String>()
    };
    let diffs = a
        .symmetric_difference(&b)
        .take(10)
        .map(|&i| {
            format!(
                "{} at {i}: {:?}",
                if a.contains(&i) {
                    "only ours"
                } else {
                    "only NLTK"
                },
                show(i)
            )
        })
        .collect();
    (both / b.len() as f64, both / a.len() as f64, diffs)
}

#[test]
fn boundaries_agree_with_nltk() {
    for name in ["edge-cases.json", "wikipedia.json", "gimp-help.json"] {
        let (recall, precision, diffs) = agreement(name);
        println!("{name}: recall {recall:.5} precision {precision:.5}");
        assert!(
            recall >= 0.99 && precision >= 0.99,
            "{name}: {recall:.4} of NLTK's boundaries found, {precision:.4} of ours in NLTK's:\n{}",
            diffs.join("\n")
        );
        if name == "edge-cases.json" {
            assert_eq!(recall, 1.0, "{}", diffs.join("\n"));
        }
    }
}
