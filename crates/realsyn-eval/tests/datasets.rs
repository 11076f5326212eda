//! The dataset readers on real files in each release layout: labels, class names,
//! captions and skip accounting come out as the layout defines them.

use std::path::Path;

use image::{Rgb, RgbImage};
use realsyn_data::EvalTransform;
use realsyn_data::wds::SkipCounter;
use realsyn_eval::LabelledDataset;
use realsyn_eval::datasets::imagenet_classes::{
    imagenet_classnames, imagenet_subset, imagenet_wnids,
};
use realsyn_eval::datasets::{ClassNames, Format, OpenOptions};
use realsyn_eval::registry::{OpenError, Registry};

fn png(path: &Path, shade: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(40, 30, Rgb([shade, 0, 255 - shade]))
        .save(path)
        .unwrap();
}

fn open(root: &Path, format: Format, split: &str, classes: &ClassNames) -> LabelledDataset {
    let opts = OpenOptions {
        format,
        split,
        classes,
        captions: Some("dataset_flickr30k.json"),
        images: Some("images"),
    };
    LabelledDataset::open_as(root, &opts).unwrap()
}

/// (labels, captions, skipped) of every sample.
fn read_all(d: &LabelledDataset) -> (Vec<usize>, Vec<Vec<String>>, u64) {
    let skips = SkipCounter::new();
    let (mut labels, mut caps) = (Vec::new(), Vec::new());
    for b in d.batches(EvalTransform::new(32), 2, &skips) {
        labels.extend(b.labels);
        caps.extend(b.captions);
    }
    (labels, caps, skips.total())
}

#[test]
fn cifar_binary_records_and_a_truncated_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::write(
        root.join("batches.meta.txt"),
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n",
    )
    .unwrap();
    let mut bytes = Vec::new();
    for label in [0u8, 3, 9] {
        bytes.push(label);
        bytes.extend(std::iter::repeat_n(label * 20, 3072));
    }
    bytes.extend([1u8; 100]); // a torn record
    std::fs::write(root.join("test_batch.bin"), bytes).unwrap();
    let d = open(root, Format::Cifar10Binary, "test", &ClassNames::Dirs);
    assert_eq!(d.classnames[1], "automobile");
    assert_eq!(d.len_hint(), Some(3));
    let (labels, _, skipped) = read_all(&d);
    assert_eq!(labels, [0, 3, 9]);
    assert_eq!(skipped, 1, "the truncated record is counted");
}

#[test]
fn imagefolder_subsets_map_wnid_folders_to_the_subset_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let wnids = imagenet_subset("imagenet-a");
    for (i, w) in [&wnids[5], &wnids[199]].iter().enumerate() {
        png(
            &tmp.path().join(w).join(format!("{i}.jpg.png")),
            40 * i as u8,
        );
    }
    std::fs::write(tmp.path().join(&wnids[5]).join("broken.png"), b"not a png").unwrap();
    let d = open(
        tmp.path(),
        Format::Imagefolder,
        ".",
        &ClassNames::parse("imagenet-a").unwrap(),
    );
    assert_eq!(d.classnames.len(), 200);
    let full = imagenet_wnids()
        .iter()
        .position(|w| *w == wnids[5])
        .unwrap();
    assert_eq!(d.classnames[5], imagenet_classnames()[full]);
    let (labels, _, skipped) = read_all(&d);
    assert_eq!(labels, [5, 199]);
    assert_eq!(skipped, 1);
}

#[test]
fn imagenet_flat_val_reads_kaggle_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let w = imagenet_wnids();
    png(&tmp.path().join("val/ILSVRC2012_val_00000001.JPEG.png"), 10);
    std::fs::rename(
        tmp.path().join("val/ILSVRC2012_val_00000001.JPEG.png"),
        tmp.path().join("val/ILSVRC2012_val_00000001.png"),
    )
    .unwrap();
    png(&tmp.path().join("val/ILSVRC2012_val_00000002.png"), 20);
    let csv = format!(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,{} 1 2 3 4\nILSVRC2012_val_00000002,{} 5 6 7 8\n",
        w[65], w[999]
    );
    std::fs::write(tmp.path().join("LOC_val_solution.csv"), csv).unwrap();
    let d = open(tmp.path(), Format::Imagenet, "test", &ClassNames::Dirs);
    assert_eq!(d.classnames.len(), 1000);
    assert_eq!(read_all(&d).0, [65, 999]);
}

#[test]
fn karpathy_captions_keep_the_test_split_and_all_captions() {
    let tmp = tempfile::tempdir().unwrap();
    png(&tmp.path().join("images/a.jpg"), 1);
    png(&tmp.path().join("images/b.jpg"), 2);
    let json = r#"{"images": [
        {"filename": "a.jpg", "split": "test", "sentences": [{"raw": "a dog. "}, {"raw": "a pet"}]},
        {"filename": "c.jpg", "split": "train", "sentences": [{"raw": "not read"}]},
        {"filename": "b.jpg", "split": "test", "sentences": [{"raw": "a cat"}]}]}"#;
    std::fs::write(tmp.path().join("dataset_flickr30k.json"), json).unwrap();
    let d = open(tmp.path(), Format::Karpathy, "test", &ClassNames::Dirs);
    let (_, caps, _) = read_all(&d);
    assert_eq!(
        caps,
        vec![
            vec!["a dog.".to_string(), "a pet".into()],
            vec!["a cat".to_string()]
        ]
    );
}

#[test]
fn a_missing_benchmark_says_where_it_was_looked_for_and_where_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::builtin();
    match reg.get("cifar100").unwrap().open(tmp.path(), "test") {
        Err(OpenError::Missing { tried, source }) => {
            assert_eq!(tried.len(), 2);
            assert!(source.contains("cifar-100-binary"));
        }
        _ => panic!("expected Missing"),
    }
    // Present but malformed: an error naming the layout, not a crash.
    std::fs::create_dir_all(tmp.path().join("hateful_memes")).unwrap();
    std::fs::write(
        tmp.path().join("hateful_memes/dev_seen.jsonl"),
        "{not json\n",
    )
    .unwrap();
    match reg.get("hateful_memes").unwrap().open(tmp.path(), "test") {
        Err(OpenError::Unreadable(e)) => {
            assert!(format!("{e:#}").contains("dev_seen.jsonl:1"), "{e:#}")
        }
        _ => panic!("expected Unreadable"),
    }
}
