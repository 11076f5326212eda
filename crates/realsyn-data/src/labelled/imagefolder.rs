//! ImageFolder trees (torchvision's layout): `ROOT/SPLIT/CLASS/*.{jpg,png,...}`, class
//! index = position of the folder in sorted order. The class names come from the
//! folder names, a `classnames.txt` beside the splits, or an ImageNet mapping (WNID
//! folders for ImageNet-Sketch/-A/-R, numbered folders for ImageNetV2).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};

use super::imagenet_classes;
use super::{LabelledDataset, image_files, read_lines, subdirs};

/// How an ImageFolder tree's folders map to classes.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ClassNames {
    /// Folder names with '_' as spaces, or ROOT/classnames.txt (one per sorted folder)
    /// when it exists.
    #[default]
    Dirs,
    /// WNID folders, all 1000 ImageNet classes, CLIP's curated names.
    Imagenet1k,
    /// Folders `0` .. `999` (ImageNetV2), CLIP's curated names.
    Imagenet1kIndex,
    /// WNID folders of a subset of ImageNet (ImageNet-A/-R: 200 classes); the
    /// classes are the subset's WNIDs in sorted order.
    ImagenetSubset(Vec<String>),
    /// Explicit names, one per sorted folder.
    List(Vec<String>),
}

impl ClassNames {
    /// `dirs`, `imagenet1k`, `imagenet1k-index`, `imagenet-a`, `imagenet-r`, or a file
    /// of names (one per line).
    pub fn parse(spec: &str) -> Result<Self> {
        Ok(match spec {
            "dirs" => Self::Dirs,
            "imagenet1k" => Self::Imagenet1k,
            "imagenet1k-index" => Self::Imagenet1kIndex,
            "imagenet-a" | "imagenet-r" => {
                Self::ImagenetSubset(imagenet_classes::imagenet_subset(spec))
            }
            path => Self::List(read_lines(Path::new(path))?),
        })
    }
}

pub fn open(root: &Path, split: &str, classes: &ClassNames) -> Result<LabelledDataset> {
    let dir = root.join(split);
    if !dir.is_dir() {
        bail!("no {split}/ folder in {}", root.display());
    }
    let folders = subdirs(&dir)?;
    if folders.is_empty() {
        bail!("{} has no class folders", dir.display());
    }
    let folder_names: Vec<String> = folders
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let imagenet = imagenet_classes::imagenet_classnames();
    let wnid_index: HashMap<&str, usize> = imagenet_classes::imagenet_wnids()
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i))
        .collect();
    // (label per folder, class names)
    let (labels, classnames): (Vec<Option<usize>>, Vec<String>) = match classes {
        ClassNames::Dirs => {
            let listed = root.join("classnames.txt");
            let names = if listed.exists() {
                let names = read_lines(&listed)?;
                if names.len() != folders.len() {
                    bail!(
                        "{} lists {} classes but {} has {} class folders",
                        listed.display(),
                        names.len(),
                        dir.display(),
                        folders.len()
                    );
                }
                names
            } else {
                folder_names.iter().map(|n| n.replace('_', " ")).collect()
            };
            ((0..folders.len()).map(Some).collect(), names)
        }
        ClassNames::List(names) => {
            if names.len() != folders.len() {
                bail!(
                    "{} class names for {} class folders",
                    names.len(),
                    folders.len()
                );
            }
            ((0..folders.len()).map(Some).collect(), names.clone())
        }
        ClassNames::Imagenet1k => (
            folder_names
                .iter()
                .map(|w| wnid_index.get(w.as_str()).copied())
                .collect(),
            imagenet.to_vec(),
        ),
        ClassNames::Imagenet1kIndex => (
            folder_names
                .iter()
                .map(|n| n.parse::<usize>().ok().filter(|&i| i < 1000))
                .collect(),
            imagenet.to_vec(),
        ),
        ClassNames::ImagenetSubset(wnids) => {
            let sub: HashMap<&str, usize> = wnids
                .iter()
                .enumerate()
                .map(|(i, w)| (w.as_str(), i))
                .collect();
            (
                folder_names
                    .iter()
                    .map(|w| sub.get(w.as_str()).copied())
                    .collect(),
                wnids
                    .iter()
                    .map(|w| imagenet[wnid_index[w.as_str()]].clone())
                    .collect(),
            )
        }
    };
    if let Some(i) = labels.iter().position(Option::is_none) {
        bail!(
            "folder {} of {} is not a class of this dataset",
            folder_names[i],
            dir.display()
        );
    }
    let mut items = Vec::new();
    for (folder, label) in folders.iter().zip(labels) {
        for f in image_files(folder)? {
            items.push((f, label.unwrap(), Vec::new()));
        }
    }
    Ok(LabelledDataset::listed(root, classnames, items))
}
