//! The training pipeline on real JPEGs in real tar shards: determinism, exact
//! resume, multi-text sampling, and bad input that is skipped and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use image::{ImageFormat, Rgb, RgbImage};
use realsyn_data::loader::{Batch, DataPosition, EpochLoader, LoaderConfig};
use realsyn_data::wds::{ShardList, ShardWriter, SkipCounter, read_shard};
use realsyn_data::{ImageTransform, RandomResizedCrop, TextKeys};

fn jpeg(seed: u32) -> Bytes {
    let img = RgbImage::from_fn(48 + seed % 17, 40 + seed % 13, |x, y| {
        Rgb([(x * 5 + seed) as u8, (y * 7) as u8, (seed * 31) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
    Bytes::from(out.into_inner())
}

/// `n` samples in the released-RealSyn layout, `per_shard` per shard.
fn write_realsyn_shards(dir: &Path, n: u32, per_shard: usize) -> Vec<PathBuf> {
    let mut w = ShardWriter::new(dir, per_shard, 0).unwrap();
    for i in 0..n {
        let key = w.next_key();
        let json = format!(
            r#"{{"key": "{key}", "text2": "second text {i}", "text3": "third text {i}", "syn_text": "synthetic text {i}", "status": "success"}}"#
        );
        w.write(
            &key,
            &[
                ("jpg", jpeg(i)),
                ("txt", Bytes::from(format!("first text {i}"))),
                ("json", Bytes::from(json)),
            ],
        )
        .unwrap();
    }
    w.finish().unwrap()
}

fn config(shards: Vec<PathBuf>, batch: usize, batches: u64) -> LoaderConfig {
    LoaderConfig {
        shards,
        rank: 0,
        world: 1,
        batch_size: batch,
        batches_per_epoch: batches,
        seed: 42,
        shuffle_buffer: 16,
        resampled: false,
        workers: 2,
        prefetch: 2,
        text_keys: TextKeys::default(),
        transform: ImageTransform::Train(RandomResizedCrop::new(32)),
        tokenize: None,
    }
}

fn run(cfg: &LoaderConfig, start: DataPosition, skips: &SkipCounter) -> Vec<Batch> {
    EpochLoader::start(cfg.clone(), start, skips.clone())
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn batches_are_deterministic_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let shards = write_realsyn_shards(dir.path(), 60, 16);
    assert_eq!(shards.len(), 4);
    let list =
        ShardList::resolve(&format!("{}/{{00000..00003}}.tar", dir.path().display())).unwrap();
    assert_eq!(list.num_samples(), Some(60));

    let cfg = config(list.shards.clone(), 8, 7);
    let skips = SkipCounter::new();
    let a = run(
        &cfg,
        DataPosition {
            epoch: 3,
            ..Default::default()
        },
        &skips,
    );
    let b = run(
        &cfg,
        DataPosition {
            epoch: 3,
            ..Default::default()
        },
        &skips,
    );
    assert_eq!(a.len(), 7);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.keys, y.keys);
        assert_eq!(x.texts, y.texts);
        assert_eq!(x.images, y.images);
    }
    assert_eq!(a[0].images.len(), 8 * 3 * 32 * 32);

    // Resume after batch 3: the rest is identical.
    let resumed = run(&cfg, a[2].end, &skips);
    assert_eq!(resumed.len(), 4);
    for (x, y) in resumed.iter().zip(&a[3..]) {
        assert_eq!((x.index, &x.keys, &x.texts), (y.index, &y.keys, &y.texts));
        assert_eq!(x.images, y.images);
    }

    // Another epoch is another order; samples are shuffled across shard boundaries.
    let e4 = run(
        &cfg,
        DataPosition {
            epoch: 4,
            ..Default::default()
        },
        &skips,
    );
    assert_ne!(e4[0].keys, a[0].keys);
    let keys: BTreeSet<&String> = a.iter().flat_map(|b| &b.keys).collect();
    assert_eq!(keys.len(), 56, "no sample repeats within an epoch");
    assert_eq!(skips.total(), 0);
}

#[test]
fn each_sample_draws_uniformly_from_its_four_texts() {
    let dir = tempfile::tempdir().unwrap();
    let shards = write_realsyn_shards(dir.path(), 40, 40);
    let cfg = config(shards, 40, 1);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_sample: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for epoch in 0..50 {
        for b in run(
            &cfg,
            DataPosition {
                epoch,
                ..Default::default()
            },
            &SkipCounter::new(),
        ) {
            for (k, t) in b.keys.iter().zip(&b.texts) {
                let kind = t.rsplit_once(' ').unwrap().0.to_string();
                *counts.entry(kind).or_default() += 1;
                per_sample.entry(k.clone()).or_default().insert(t.clone());
            }
        }
    }
    // 2000 draws over 4 texts: each near 500 (binomial sd ~19).
    assert_eq!(counts.len(), 4, "{counts:?}");
    for (kind, n) in &counts {
        assert!((400..600).contains(n), "{kind}: {n} of 2000");
    }
    assert!(per_sample.values().all(|s| s.len() >= 3));

    // The ablation "realistic texts only" is a change of keys.
    let mut real_only = cfg.clone();
    real_only.text_keys = TextKeys::parse(&["txt", "json.text2", "json.text3"]).unwrap();
    let b = run(&real_only, DataPosition::default(), &SkipCounter::new());
    assert!(b[0].texts.iter().all(|t| !t.starts_with("synthetic")));
}

#[test]
fn bad_samples_and_truncated_tars_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::new(dir.path(), 100, 0).unwrap();
    for i in 0..10u32 {
        let key = w.next_key();
        let mut fields = vec![("jpg", jpeg(i)), ("txt", Bytes::from(format!("text {i}")))];
        if i == 3 {
            fields[0].1 = Bytes::from_static(b"\xff\xd8\xff\xe0 not really a jpeg");
        }
        if i == 5 {
            fields.truncate(1); // no text at all
        }
        if i == 7 {
            fields.remove(0); // no image
        }
        w.write(&key, &fields).unwrap();
    }
    let good = w.finish().unwrap().remove(0);
    // A second shard cut off in the middle of its 6th sample.
    let dir2 = tempfile::tempdir().unwrap();
    let full = write_realsyn_shards(dir2.path(), 10, 100).remove(0);
    let bytes = std::fs::read(&full).unwrap();
    let truncated = dir.path().join("00001.tar");
    let mut cut = 0;
    let mut seen = 0;
    // Find the 6th sample's image header offset by counting .jpg members.
    for (i, w) in bytes.windows(4).enumerate() {
        if w == b".jpg" && i % 512 < 100 {
            seen += 1;
            if seen == 6 {
                cut = i - i % 512 + 700;
                break;
            }
        }
    }
    std::fs::write(&truncated, &bytes[..cut]).unwrap();
    let missing = dir.path().join("00002.tar");

    let skips = SkipCounter::new();
    assert_eq!(read_shard(&truncated, &skips).count(), 5);
    assert_eq!(skips.snapshot()["truncated or corrupt tar"], 1);

    let mut cfg = config(vec![good, truncated, missing], 4, 100);
    cfg.shuffle_buffer = 0;
    cfg.world = 1;
    let skips = SkipCounter::new();
    let batches = run(&cfg, DataPosition::default(), &skips);
    let n: usize = batches.iter().map(Batch::len).sum();
    // 7 good + 5 before the cut = 12 samples = 3 full batches.
    assert_eq!(n, 12);
    let counts = skips.snapshot();
    assert_eq!(counts["corrupt image"], 1);
    assert_eq!(counts["no text"], 1);
    assert_eq!(counts["no image"], 1);
    assert_eq!(counts["truncated or corrupt tar"], 1);
    assert_eq!(counts["unreadable shard"], 1);
}

#[test]
fn resampled_shards_and_rank_split() {
    let dir = tempfile::tempdir().unwrap();
    let shards = write_realsyn_shards(dir.path(), 32, 8);
    let mut cfg = config(shards, 8, 10);
    cfg.resampled = true;
    let b = run(&cfg, DataPosition::default(), &SkipCounter::new());
    assert_eq!(b.len(), 10, "resampling never runs out");
    cfg.resampled = false;
    cfg.world = 2;
    let r0 = run(&cfg, DataPosition::default(), &SkipCounter::new());
    cfg.rank = 1;
    let r1 = run(&cfg, DataPosition::default(), &SkipCounter::new());
    let k0: BTreeSet<_> = r0.iter().flat_map(|b| b.keys.clone()).collect();
    let k1: BTreeSet<_> = r1.iter().flat_map(|b| b.keys.clone()).collect();
    assert_eq!(k0.len() + k1.len(), 32);
    assert!(k0.is_disjoint(&k1));
}

#[test]
fn skip_counts_after_a_resume_equal_an_uninterrupted_run() {
    // 80 samples, every 5th with a corrupt image, every 7th without text.
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::new(dir.path(), 20, 0).unwrap();
    for i in 0..80u32 {
        let key = w.next_key();
        let mut fields = vec![("jpg", jpeg(i)), ("txt", Bytes::from(format!("text {i}")))];
        if i % 5 == 0 {
            fields[0].1 = Bytes::from_static(b"\xff\xd8\xff\xe0 not really a jpeg");
        }
        if i % 7 == 3 {
            fields.truncate(1);
        }
        w.write(&key, &fields).unwrap();
    }
    let shards = w.finish().unwrap();
    let cfg = config(shards, 4, 100);
    let whole = SkipCounter::new();
    let all = run(&cfg, DataPosition::default(), &whole);
    assert!(all.len() >= 12, "{}", all.len());
    // Stop after 3 batches (the batcher has decoded ahead by then), keep the counts
    // as a checkpoint would, resume from the third batch's end with them restored.
    let first = SkipCounter::new();
    let mut loader =
        EpochLoader::start(cfg.clone(), DataPosition::default(), first.clone()).unwrap();
    let taken: Vec<Batch> = (0..3).map(|_| loader.next().unwrap().unwrap()).collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let at_checkpoint = first.snapshot();
    drop(loader);
    let resumed = SkipCounter::new();
    resumed.restore(&at_checkpoint);
    let rest = run(&cfg, taken[2].end, &resumed);
    assert_eq!(3 + rest.len(), all.len());
    assert_eq!(
        resumed.snapshot(),
        whole.snapshot(),
        "checkpoint had {at_checkpoint:?}"
    );
    // The checkpoint's counts cover only the skips before its position.
    let before: u64 = at_checkpoint.values().sum();
    assert!(
        before < whole.total(),
        "{at_checkpoint:?} vs {:?}",
        whole.snapshot()
    );
}

/// Shard-level skips (a missing shard, a truncated tar) are counted when training
/// passes them, not when the reader meets them ahead of a checkpoint: a resume from
/// any batch gives the uninterrupted run's counts.
#[test]
fn shard_skips_after_a_resume_equal_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut shards = write_realsyn_shards(dir.path(), 80, 16);
    // The last shard cut in its middle, and three shards that do not exist.
    let last = shards.last().unwrap().clone();
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..bytes.len() / 2 + 100]).unwrap();
    for i in 0..3 {
        shards.push(dir.path().join(format!("missing-{i}.tar")));
    }
    let mut cfg = config(shards, 4, 100);
    // No shuffle buffer: the reader runs only the channel's length ahead, so
    // shards are met after the first batches.
    cfg.shuffle_buffer = 0;
    let whole = SkipCounter::new();
    let all = run(&cfg, DataPosition::default(), &whole);
    assert_eq!(
        whole.snapshot()["unreadable shard"],
        3,
        "{:?}",
        whole.snapshot()
    );
    assert_eq!(whole.snapshot()["truncated or corrupt tar"], 1);
    for stop_after in [1, 3, 6, 9, 12] {
        let first = SkipCounter::new();
        let mut loader =
            EpochLoader::start(cfg.clone(), DataPosition::default(), first.clone()).unwrap();
        let taken: Vec<Batch> = (0..stop_after)
            .map(|_| loader.next().unwrap().unwrap())
            .collect();
        // Let the reader run ahead as far as it can before the "checkpoint".
        std::thread::sleep(std::time::Duration::from_millis(100));
        let at_checkpoint = first.snapshot();
        drop(loader);
        let resumed = SkipCounter::new();
        resumed.restore(&at_checkpoint);
        let rest = run(&cfg, taken.last().unwrap().end, &resumed);
        assert_eq!(stop_after + rest.len(), all.len());
        assert_eq!(
            resumed.snapshot(),
            whole.snapshot(),
            "stopped after {stop_after} batches; the checkpoint had {at_checkpoint:?}"
        );
    }
}

/// Random subsets of one seed are nested, in the source's order, with their bytes
/// and sizes.json; another seed draws other samples.
#[test]
fn subsets_are_nested_and_keep_samples_whole() {
    let tmp = tempfile::tempdir().unwrap();
    write_realsyn_shards(&tmp.path().join("src"), 40, 10);
    let pattern = format!("{}/{{00000..00003}}.tar", tmp.path().join("src").display());
    let keys = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let skips = SkipCounter::new();
        let mut tars: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "tar"))
            .collect();
        tars.sort();
        tars.iter()
            .flat_map(|t| read_shard(t, &skips))
            .map(|s| (s.key.clone(), s.get("txt").unwrap().to_vec()))
            .collect()
    };
    let small = tmp.path().join("s10");
    let big = tmp.path().join("s25");
    let other = tmp.path().join("o10");
    assert_eq!(
        realsyn_data::wds::write_subset(&pattern, 10, 7, 4, &small).unwrap(),
        10
    );
    assert_eq!(
        realsyn_data::wds::write_subset(&pattern, 25, 7, 4, &big).unwrap(),
        25
    );
    realsyn_data::wds::write_subset(&pattern, 10, 8, 4, &other).unwrap();
    let (s, b, o) = (keys(&small), keys(&big), keys(&other));
    assert!(s.iter().all(|k| b.contains(k)), "nested");
    assert_ne!(s, o);
    let mut sorted = b.clone();
    sorted.sort();
    assert_eq!(b, sorted, "the source's order");
    for (key, txt) in &b {
        let i: u32 = key[5..].parse::<u32>().unwrap() + 10 * key[..5].parse::<u32>().unwrap();
        assert_eq!(txt, format!("first text {i}").as_bytes());
    }
    let sizes: std::collections::BTreeMap<String, u64> =
        serde_json::from_slice(&std::fs::read(big.join("sizes.json")).unwrap()).unwrap();
    assert_eq!(sizes.values().sum::<u64>(), 25);
    assert!(realsyn_data::wds::write_subset(&pattern, 41, 7, 4, &tmp.path().join("x")).is_err());
}
