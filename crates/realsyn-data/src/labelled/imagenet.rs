//! ILSVRC2012 as image-net.org ships it: `train/WNID/*.JPEG`, and `val/` either sorted
//! into WNID folders (torchvision's / valprep.sh layout) or flat with its labels in
//! Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString` starting with the WNID).
//! The devkit's `ILSVRC2012_validation_ground_truth.txt` is not read: its ids follow
//! the devkit's own synset order (id 1 is n02119789, kit fox), kept in `meta.mat`;
//! sort `val/` into WNID folders with the devkit's `valprep.sh` instead.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::imagefolder::{self, ClassNames};
use super::imagenet_classes;
use super::{LabelledDataset, image_files, read_lines, subdirs};

pub fn open(root: &Path, split: &str) -> Result<LabelledDataset> {
    let split = if split == "test" { "val" } else { split };
    let dir = root.join(split);
    if !dir.is_dir() {
        bail!("no {split}/ folder in {}", root.display());
    }
    if !subdirs(&dir)?.is_empty() {
        return imagefolder::open(root, split, &ClassNames::Imagenet1k);
    }
    let files = image_files(&dir)?;
    let wnids = imagenet_classes::imagenet_wnids();
    let index: HashMap<&str, usize> = wnids
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i))
        .collect();
    let mut label_of: HashMap<String, usize> = HashMap::new();
    let csv = root.join("LOC_val_solution.csv");
    if !csv.exists() {
        bail!(
            "{} is flat, so its labels are needed: put Kaggle's LOC_val_solution.csv in {} \
             or sort val/ into WNID folders (valprep.sh)",
            dir.display(),
            root.display()
        );
    }
    for line in read_lines(&csv)?.into_iter().skip(1) {
        let (id, pred) = line
            .split_once(',')
            .context("LOC_val_solution.csv: bad row")?;
        let wnid = pred.split_whitespace().next().unwrap_or("");
        let label = *index
            .get(wnid)
            .with_context(|| format!("LOC_val_solution.csv: unknown class {wnid}"))?;
        label_of.insert(id.to_string(), label);
    }
    let mut items = Vec::new();
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        if let Some(&label) = label_of.get(&stem) {
            items.push((f, label, Vec::new()));
        }
    }
    if items.is_empty() {
        bail!("no image of {} has a label", dir.display());
    }
    Ok(LabelledDataset::listed(
        root,
        imagenet_classes::imagenet_classnames().to_vec(),
        items,
    ))
}
