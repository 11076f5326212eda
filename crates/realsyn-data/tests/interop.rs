//! Shards cross the Rust/Python boundary both ways (fixtures: tests/peer/wds_interop.py).
//! - Shards written by Python `webdataset` in the img2dataset/RealSyn layout are read
//!   by the training pipeline with every candidate text.
//! - Shards written here are byte-identical to the committed ones that Python
//!   `webdataset` read, and Python saw exactly what was written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use realsyn_data::datasets::fashion_mnist::{self, DEBIAN_DIR};
use realsyn_data::loader::{DataPosition, EpochLoader, LoaderConfig};
use realsyn_data::wds::{ShardList, SkipCounter, read_shard};
use realsyn_data::{EvalTransform, ImageTransform, TextKeys, decode_image};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/wds")
}

#[test]
fn python_written_shards_are_read_with_all_texts() {
    let expected: BTreeMap<String, serde_json::Value> = serde_json::from_slice(
        &std::fs::read(fixtures().join("python-written.expected.json")).unwrap(),
    )
    .unwrap();
    let list = ShardList::resolve(&format!(
        "{}/python-written/{{00000..00001}}.tar",
        fixtures().display()
    ))
    .unwrap();
    assert_eq!(list.num_samples(), Some(10), "sizes.json is read");
    let skips = SkipCounter::new();
    let keys = TextKeys::default();
    let mut n = 0;
    for shard in &list.shards {
        for s in read_shard(shard, &skips) {
            let want = &expected[&s.key];
            let texts: Vec<String> = serde_json::from_value(want["texts"].clone()).unwrap();
            assert_eq!(keys.candidates(&s), texts, "{}", s.key);
            let img = decode_image(s.get("jpg").unwrap()).unwrap();
            assert_eq!(
                (img.width() as u64, img.height() as u64),
                (
                    want["width"].as_u64().unwrap(),
                    want["height"].as_u64().unwrap()
                )
            );
            n += 1;
        }
    }
    assert_eq!(n, 10);
    assert_eq!(skips.total(), 0);

    // And through the training pipeline itself.
    let cfg = LoaderConfig {
        shards: list.shards.clone(),
        rank: 0,
        world: 1,
        batch_size: 5,
        batches_per_epoch: 2,
        seed: 0,
        shuffle_buffer: 4,
        resampled: false,
        workers: 2,
        prefetch: 1,
        text_keys: keys,
        transform: ImageTransform::Eval(EvalTransform::new(16)),
        tokenize: None,
    };
    let batches: Vec<_> = EpochLoader::start(cfg, DataPosition::default(), SkipCounter::new())
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), 10);
}

#[test]
fn realsyn_written_shards_are_what_python_read() {
    assert!(
        Path::new(DEBIAN_DIR).is_dir(),
        "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist (the README setup and .ci/run do)"
    );
    // Regenerate the committed shards: the writer is deterministic, so this is
    // exactly what Python webdataset read when the fixture was made.
    let tmp = tempfile::tempdir().unwrap();
    fashion_mnist::convert(Path::new(DEBIAN_DIR), tmp.path(), 6, Some(12), 0).unwrap();
    for name in ["00000.tar", "00001.tar"] {
        let ours = std::fs::read(tmp.path().join("train").join(name)).unwrap();
        let committed = std::fs::read(fixtures().join("realsyn-written").join(name)).unwrap();
        assert!(
            ours == committed,
            "{name} differs from the shard Python read; re-run tests/peer/wds_interop.py"
        );
    }
    let seen: BTreeMap<String, serde_json::Value> = serde_json::from_slice(
        &std::fs::read(fixtures().join("realsyn-written.python-read.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(seen.len(), 12, "Python read every sample");
    let skips = SkipCounter::new();
    for name in ["00000.tar", "00001.tar"] {
        for s in read_shard(&tmp.path().join("train").join(name), &skips) {
            let py = &seen[&s.key];
            assert_eq!(
                py["fields"],
                serde_json::json!(["cls", "jpg", "json", "txt"])
            );
            let texts = TextKeys::default().candidates(&s);
            let py_texts: Vec<&str> = ["txt", "text2", "text3", "syn_text"]
                .iter()
                .map(|k| py[*k].as_str().unwrap())
                .collect();
            assert_eq!(texts, py_texts);
            assert_eq!(py["image_size"], serde_json::json!([28, 28]));
        }
    }
}
