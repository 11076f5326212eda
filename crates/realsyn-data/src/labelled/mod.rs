//! Evaluation datasets in the layouts users get from the official releases (and the
//! generic ones for their own sets), read into one [`LabelledDataset`]: class names,
//! optional templates, and a stream of images with a label (classification) or with
//! captions (retrieval). Images are decoded and transformed on the rayon pool;
//! unreadable samples are skipped and counted by reason, never fatal.

mod cifar;
mod imagefolder;
mod imagenet;
pub mod imagenet_classes;
mod jsonl;
pub mod metrics;
mod objectnet;
mod retrieval;
mod wds;

use std::path::{Path, PathBuf};

use crate::wds::{SkipCounter, read_shard};
use crate::{EvalTransform, decode_image};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use image::{DynamicImage, RgbImage};
use rayon::prelude::*;

pub use imagefolder::ClassNames;

/// Where one sample's image is.
pub enum ImageRef {
    File(PathBuf),
    Encoded(Bytes),
    Pixels(RgbImage),
}

/// One sample before decoding: its image, its class (classification) and its
/// captions (retrieval).
pub struct Item {
    pub image: ImageRef,
    pub label: usize,
    pub captions: Vec<String>,
    /// How to name the sample in a skip message.
    pub id: String,
}

/// How a dataset's samples are stored.
pub enum Source {
    /// WebDataset shards; samples carry `cls` (classification) or `txt` (retrieval,
    /// one caption per line).
    Shards(Vec<PathBuf>),
    /// Samples listed up front (image files with their label and captions).
    Items(Vec<(PathBuf, usize, Vec<String>)>),
    /// CIFAR binary batches: `label_bytes` label bytes (the last is the class) then a
    /// 32x32 RGB image in planar order.
    CifarBinary {
        files: Vec<PathBuf>,
        label_bytes: usize,
    },
}

/// What the samples are scored on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Classification,
    Retrieval,
}

/// One split of an evaluation dataset.
pub struct LabelledDataset {
    pub root: PathBuf,
    pub kind: Kind,
    /// Class names in label order (empty for retrieval).
    pub classnames: Vec<String>,
    /// Templates shipped with the data (CLIP_benchmark exports carry them); `{c}` or
    /// `{}` marks the class name. The suite may replace them (SLIP's, by default).
    pub templates: Vec<String>,
    pub source: Source,
}

/// A decoded batch: pixels in the eval transform, labels, captions.
#[derive(Default)]
pub struct DecodedBatch {
    pub pixels: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
    pub captions: Vec<Vec<String>>,
}

/// The non-empty lines of a list (class names, templates, WNIDs), trimmed.
pub(crate) fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

pub(crate) fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(lines(&text))
}

/// The on-disk layouts `open` reads (names as in `eval/benchmarks.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Wds,
    WdsRetrieval,
    Imagefolder,
    Cifar10Binary,
    Cifar100Binary,
    Imagenet,
    Objectnet,
    Jsonl,
    Karpathy,
}

impl Format {
    /// `wds`, `imagefolder`, `cifar10-binary`, ... as written in the registry.
    pub fn parse(name: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
            anyhow::anyhow!(
                "unknown dataset format {name:?}; one of wds, wds-retrieval, imagefolder, \
                 cifar10-binary, cifar100-binary, imagenet, objectnet, jsonl, karpathy"
            )
        })
    }

    pub fn is_retrieval(self) -> bool {
        matches!(self, Format::WdsRetrieval | Format::Karpathy)
    }
}

/// How to open one split of a dataset stored at `root` in `format`.
pub struct OpenOptions<'a> {
    pub format: Format,
    pub split: &'a str,
    /// Class names for `imagefolder`.
    pub classes: &'a ClassNames,
    /// Caption file for `karpathy`, relative to the root.
    pub captions: Option<&'a str>,
    /// Image folder for `karpathy`, relative to the root.
    pub images: Option<&'a str>,
}

impl LabelledDataset {
    /// A classification set of listed image files `(path, label, no captions)`.
    pub(crate) fn listed(
        root: &Path,
        classnames: Vec<String>,
        items: Vec<(PathBuf, usize, Vec<String>)>,
    ) -> Self {
        Self {
            root: root.to_path_buf(),
            kind: Kind::Classification,
            classnames,
            templates: Vec::new(),
            source: Source::Items(items),
        }
    }

    /// A CLIP_benchmark WebDataset export (`ROOT/SPLIT/*.tar`, `classnames.txt`,
    /// `zeroshot_classification_templates.txt`): the layout `realsyn dataset` writes
    /// and the trainer's zero-shot hook reads.
    pub fn open(root: &Path, split: &str) -> Result<Self> {
        wds::open(root, split, Kind::Classification)
    }

    /// Open `split` of the dataset at `root` stored in `opts.format`.
    pub fn open_as(root: &Path, opts: &OpenOptions) -> Result<Self> {
        if !root.exists() {
            bail!("{} does not exist", root.display());
        }
        match opts.format {
            Format::Wds => wds::open(root, opts.split, Kind::Classification),
            Format::WdsRetrieval => wds::open(root, opts.split, Kind::Retrieval),
            Format::Imagefolder => imagefolder::open(root, opts.split, opts.classes),
            Format::Cifar10Binary => cifar::open(root, opts.split, false),
            Format::Cifar100Binary => cifar::open(root, opts.split, true),
            Format::Imagenet => imagenet::open(root, opts.split),
            Format::Objectnet => objectnet::open(root),
            Format::Jsonl => jsonl::open(root, opts.split),
            Format::Karpathy => retrieval::open_karpathy(
                root,
                opts.split,
                opts.captions.unwrap_or("dataset.json"),
                opts.images.unwrap_or("."),
            ),
        }
    }

    /// Keep at most `n` samples. Listed samples (files sorted by class folder) are
    /// thinned evenly, so a subset keeps every class; shards and CIFAR batches, whose
    /// samples come shuffled, are cut when read.
    pub fn limit(&mut self, n: usize) {
        if let Source::Items(items) = &mut self.source {
            let len = items.len();
            if n < len {
                let picked = (0..n).map(|i| i * len / n).collect::<Vec<_>>();
                let mut all = std::mem::take(items).into_iter().enumerate();
                *items = picked
                    .into_iter()
                    .map(|want| all.find(|(i, _)| *i == want).unwrap().1)
                    .collect();
            }
        }
    }

    /// The number of samples, when known without reading them (not for shards).
    pub fn len_hint(&self) -> Option<usize> {
        match &self.source {
            Source::Shards(_) => None,
            Source::Items(v) => Some(v.len()),
            Source::CifarBinary { files, label_bytes } => Some(cifar::count(files, *label_bytes)),
        }
    }

    /// The samples, undecoded, in a fixed order. Unreadable records are counted in
    /// `skips` and left out.
    fn items(&self, skips: &SkipCounter) -> Box<dyn Iterator<Item = Item> + Send + '_> {
        match &self.source {
            Source::Shards(shards) => {
                let skips = skips.clone();
                let kind = self.kind;
                Box::new(shards.iter().flat_map(move |s| {
                    let skips = skips.clone();
                    read_shard(s, &skips.clone()).filter_map(move |s| wds::item(s, kind, &skips))
                }))
            }
            Source::Items(list) => Box::new(list.iter().map(|(p, label, captions)| Item {
                image: ImageRef::File(p.clone()),
                label: *label,
                captions: captions.clone(),
                id: p.display().to_string(),
            })),
            Source::CifarBinary { files, label_bytes } => {
                Box::new(cifar::items(files.clone(), *label_bytes, skips.clone()))
            }
        }
    }

    /// Decoded batches of up to `batch` samples. Bad samples are skipped and counted
    /// in `skips`.
    pub fn batches<'a>(
        &'a self,
        transform: EvalTransform,
        batch: usize,
        skips: &SkipCounter,
    ) -> impl Iterator<Item = DecodedBatch> + 'a {
        let n_classes = self.classnames.len();
        let kind = self.kind;
        let skips = skips.clone();
        let mut items = self.items(&skips);
        std::iter::from_fn(move || {
            let chunk: Vec<Item> = items.by_ref().take(batch).collect();
            if chunk.is_empty() {
                return None;
            }
            let decoded: Vec<Result<Vec<f32>, &'static str>> = chunk
                .par_iter()
                .map(|it| {
                    if kind == Kind::Classification && it.label >= n_classes {
                        return Err("class label out of range");
                    }
                    if kind == Kind::Retrieval && it.captions.is_empty() {
                        return Err("no caption");
                    }
                    let img = load(&it.image)?;
                    transform.apply(&img).map_err(|_| "corrupt image")
                })
                .collect();
            let mut out = DecodedBatch::default();
            for (d, it) in decoded.into_iter().zip(chunk) {
                match d {
                    Ok(p) => {
                        out.pixels.push(p);
                        out.labels.push(it.label);
                        out.captions.push(it.captions);
                    }
                    Err(reason) => skips.skip(reason, &it.id),
                }
            }
            Some(out)
        })
    }
}

fn load(image: &ImageRef) -> Result<DynamicImage, &'static str> {
    match image {
        ImageRef::File(p) => {
            let bytes = std::fs::read(p).map_err(|_| "unreadable image file")?;
            decode_image(&bytes).map_err(|_| "corrupt image")
        }
        ImageRef::Encoded(b) => decode_image(b).map_err(|_| "corrupt image"),
        ImageRef::Pixels(p) => Ok(DynamicImage::ImageRgb8(p.clone())),
    }
}

/// Image files directly in `dir`, sorted by name.
pub(crate) fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    crate::image::IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Subdirectories of `dir`, sorted by name.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}
