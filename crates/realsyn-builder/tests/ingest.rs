//! Ingest on real files: OBELICS parquet written by pyarrow (snappy and zstd; fixture
//! script tests/peer/obelics_fixture.py), a truncated copy and garbage bytes, two files
//! that made the parquet decoder loop for hours (tests/fixtures/obelics/hostile); real
//! GIMP manual pages; `--shard i/N` parts that cover the input exactly once.

use std::path::{Path, PathBuf};

use realsyn_builder::extract::ingest::{Format, Input};
use realsyn_builder::{Document, Item, ShardSpec};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/obelics")
}

fn read(input: &Input, shard: ShardSpec) -> (Vec<Document>, Vec<(String, String)>) {
    let (mut docs, mut skips) = (Vec::new(), Vec::new());
    input
        .documents(shard, &mut |d| docs.push(d), &mut |r, w| {
            skips.push((r.to_string(), w.to_string()))
        })
        .unwrap();
    (docs, skips)
}

#[test]
fn obelics_parquet_rows_become_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixtures().join("snappy.parquet")).unwrap();
    std::fs::write(
        tmp.path().join("truncated.parquet"),
        &good[..good.len() / 2],
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("garbage.parquet"),
        b"PAR1 this is not parquet",
    )
    .unwrap();
    let input = Input::list(
        Format::Obelics,
        &[
            fixtures().join("snappy.parquet"),
            fixtures().join("zstd.parquet"),
            tmp.path().to_path_buf(),
        ],
    )
    .unwrap();
    let (docs, skips) = read(&input, ShardSpec::default());
    assert_eq!(docs.len(), 6, "3 good rows in each of the two good files");
    let reasons: Vec<&str> = skips.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "malformed row",
            "malformed row",
            "malformed parquet file",
            "malformed parquet file"
        ],
        "{skips:?}"
    );
    let d = &docs[0];
    assert_eq!(d.id, "https://en.wikipedia.org/wiki/Doc0");
    assert_eq!(d.url.as_deref(), Some("https://en.wikipedia.org/wiki/Doc0"));
    assert!(d.source.starts_with("obelics:") && d.source.ends_with("snappy.parquet"));
    assert_eq!(d.items.len(), 4);
    assert_eq!(
        d.items[0],
        Item::Image {
            src: "http://images.example.org/doc0/a.jpg".into(),
            alt: Some("Illustration 0".into())
        }
    );
    assert!(matches!(&d.items[1], Item::Text { text } if text.len() > 200));
    assert_eq!(
        d.items[2],
        Item::Image {
            src: "http://images.example.org/doc0/b.jpg".into(),
            alt: None
        }
    );
    assert_eq!(
        docs[0].items, docs[3].items,
        "snappy and zstd files hold the same rows"
    );
    assert!(docs[3].source.ends_with("zstd.parquet"));
}

#[test]
fn parquet_thrift_skip_bombs_end_in_a_skip() {
    // Each file spun for hours in the unpatched `parquet` crate (see the fixtures'
    // README). Read on a thread so that a regression fails here instead of hanging CI.
    for (name, reason) in [
        // The footer reads; the first page header runs off the end of the file.
        ("thrift-skip-past-end.parquet", "truncated parquet file"),
        // The footer itself does not parse.
        ("thrift-bool-list.parquet", "malformed parquet file"),
    ] {
        let path = fixtures().join("hostile").join(name);
        assert!(path.exists(), "{} missing", path.display());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let input = Input::list(Format::Obelics, &[path]).unwrap();
            let _ = tx.send(read(&input, ShardSpec::default()));
        });
        let (docs, skips) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{name}: still reading after 60 s"));
        assert!(docs.is_empty(), "{name}: {docs:?}");
        assert_eq!(skips.len(), 1, "{name}: {skips:?}");
        assert_eq!(skips[0].0, reason, "{name}");
    }
}

#[test]
fn parts_cover_the_input_once() {
    for (format, paths) in [
        (Format::Obelics, vec![fixtures().join("snappy.parquet")]),
        (
            Format::Html,
            vec![PathBuf::from("/usr/share/gimp/2.0/help/en")],
        ),
    ] {
        if !paths[0].exists() {
            panic!(
                "{} missing: run scripts/setup-system.sh",
                paths[0].display()
            );
        }
        let input = Input::list(format, &paths).unwrap();
        let all: Vec<String> = read(&input, ShardSpec::default())
            .0
            .into_iter()
            .map(|d| d.id)
            .collect();
        let mut parts: Vec<String> = ShardSpec::all(3)
            .flat_map(|s| read(&input, s).0.into_iter().map(|d| d.id))
            .collect();
        let mut sorted = all.clone();
        sorted.sort();
        parts.sort();
        assert_eq!(parts, sorted, "{format:?}: parts overlap or miss documents");
    }
}

#[test]
fn gimp_pages_keep_text_and_images_in_order() {
    let root = Path::new("/usr/share/gimp/2.0/help/en");
    let input = Input::list(Format::Html, &[root.join("gimp-tool-crop.html")]).unwrap();
    let (docs, _) = read(&input, ShardSpec::default());
    let d = &docs[0];
    assert!(
        d.url
            .as_deref()
            .unwrap()
            .starts_with("file:///usr/share/gimp/2.0/help/en/")
    );
    let images: Vec<(&str, Option<&str>)> = d.images().map(|(_, s, a)| (s, a)).collect();
    assert!(images.len() >= 3, "{images:?}");
    for (src, _) in &images {
        assert!(Path::new(src).exists(), "{src} resolved to a missing file");
    }
    let text: Vec<&str> = d.texts().map(|(_, t)| t).collect();
    assert!(text.iter().any(|t| t.contains("crop")), "{text:?}");
    assert!(
        !text.iter().any(|t| t.contains("<") && t.contains(">")),
        "markup leaked into text"
    );
}

#[test]
fn mmc4_lines_with_a_byte_order_mark_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("docs.jsonl");
    let doc = r#"{"url": "https://example.org/a", "text_list": ["A red kite flies over the hill."], "image_info": []}"#;
    std::fs::write(&file, format!("\u{feff}{doc}\n{doc}\n")).unwrap();
    let input = Input::list(Format::Mmc4, &[file]).unwrap();
    let (docs, skips) = read(&input, ShardSpec::default());
    assert_eq!((docs.len(), skips.len()), (2, 0), "{skips:?}");
}

#[test]
fn mmc4_images_matched_past_the_last_sentence_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("docs.jsonl");
    let doc = r#"{"url": "https://example.org/a", "text_list": ["One sentence.", "Two sentences."], "image_info": [{"raw_url": "https://example.org/0.jpg", "matched_text_index": 0}, {"raw_url": "https://example.org/9.jpg", "matched_text_index": 9}, {"raw_url": "https://example.org/n.jpg"}]}"#;
    let bare = r#"{"url": "https://example.org/b", "text_list": [], "image_info": [{"raw_url": "https://example.org/x.jpg", "matched_text_index": 0}]}"#;
    std::fs::write(&file, format!("{doc}\n{bare}\n")).unwrap();
    let input = Input::list(Format::Mmc4, &[file]).unwrap();
    let (docs, _) = read(&input, ShardSpec::default());
    let srcs: Vec<Vec<&str>> = docs
        .iter()
        .map(|d| d.images().map(|(_, s, _)| s).collect())
        .collect();
    assert_eq!(
        srcs,
        vec![
            vec![
                "https://example.org/0.jpg",
                "https://example.org/9.jpg",
                "https://example.org/n.jpg"
            ],
            vec!["https://example.org/x.jpg"],
        ]
    );
    // The out-of-range and unmatched images come after the last sentence.
    assert!(matches!(docs[0].items[3], Item::Image { .. }));
    assert!(matches!(docs[0].items[2], Item::Text { .. }));
}
