//! CIFAR-10/100 as the official binary release ships them:
//! `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin` + `batches.meta.txt`, and
//! `cifar-100-binary/{train,test}.bin` + `fine_label_names.txt`. A record is the label
//! byte(s) (CIFAR-100: coarse then fine) and 3,072 bytes of planar 32x32 RGB.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::wds::SkipCounter;
use anyhow::{Result, bail};
use image::RgbImage;

use super::{ImageRef, Item, Kind, LabelledDataset, Source, read_lines};

const PIXELS: usize = 32 * 32 * 3;

pub fn open(root: &Path, split: &str, hundred: bool) -> Result<LabelledDataset> {
    let train = split == "train";
    let (files, names, label_bytes): (Vec<PathBuf>, _, usize) = if hundred {
        let f = if train { "train.bin" } else { "test.bin" };
        (vec![root.join(f)], "fine_label_names.txt", 2)
    } else if train {
        (
            (1..=5)
                .map(|i| root.join(format!("data_batch_{i}.bin")))
                .collect(),
            "batches.meta.txt",
            1,
        )
    } else {
        (vec![root.join("test_batch.bin")], "batches.meta.txt", 1)
    };
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        bail!("{} is missing", missing.display());
    }
    // CIFAR's names use '_' for spaces ("aquarium_fish"); SLIP's labels are the same
    // names with spaces.
    let classnames = read_lines(&root.join(names))?
        .into_iter()
        .map(|n| n.replace('_', " "))
        .collect();
    Ok(LabelledDataset {
        root: root.to_path_buf(),
        kind: Kind::Classification,
        classnames,
        templates: Vec::new(),
        source: Source::CifarBinary { files, label_bytes },
    })
}

/// The number of whole records in `files`.
pub fn count(files: &[PathBuf], label_bytes: usize) -> usize {
    files
        .iter()
        .map(|f| f.metadata().map(|m| m.len() as usize).unwrap_or(0) / (label_bytes + PIXELS))
        .sum()
}

/// Records of `files` in order; a truncated trailing record is counted and dropped.
pub fn items(
    files: Vec<PathBuf>,
    label_bytes: usize,
    skips: SkipCounter,
) -> impl Iterator<Item = Item> + Send {
    files.into_iter().flat_map(move |path| {
        let record = label_bytes + PIXELS;
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes));
        if read.is_err() {
            skips.skip("unreadable file", &path.display().to_string());
        }
        if bytes.len() % record != 0 {
            skips.skip("truncated record", &path.display().to_string());
        }
        let name = path.display().to_string();
        (0..bytes.len() / record).map(move |i| {
            let (label, px) = bytes[i * record..(i + 1) * record].split_at(label_bytes);
            let mut img = RgbImage::new(32, 32);
            for (p, pixel) in img.pixels_mut().enumerate() {
                pixel.0 = [px[p], px[1024 + p], px[2048 + p]];
            }
            Item {
                image: ImageRef::Pixels(img),
                label: label[label_bytes - 1] as usize,
                captions: Vec::new(),
                id: format!("{name}#{i}"),
            }
        })
    })
}
