//! ObjectNet 1.0 as objectnet.dev ships it: `objectnet-1.0/images/FOLDER/*` and
//! `objectnet-1.0/mappings/{folder_to_objectnet_label,objectnet_to_imagenet_1k}.json`.
//! As in CLIP_benchmark (after wise-ft), only the 113 classes that overlap ImageNet
//! are scored, each as its own class named by its ObjectNet label.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{LabelledDataset, image_files};

fn read_map(path: &Path) -> Result<HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn open(root: &Path) -> Result<LabelledDataset> {
    let base = root.join("objectnet-1.0");
    let mappings = [base.join("mappings"), root.to_path_buf()]
        .into_iter()
        .find(|d| d.join("folder_to_objectnet_label.json").exists())
        .with_context(|| format!("no objectnet-1.0/mappings/ in {}", root.display()))?;
    let folder_label = read_map(&mappings.join("folder_to_objectnet_label.json"))?;
    let overlap = read_map(&mappings.join("objectnet_to_imagenet_1k.json"))?;
    let mut folders: Vec<(&String, &String)> = folder_label
        .iter()
        .filter(|(_, label)| overlap.contains_key(*label))
        .collect();
    folders.sort();
    if folders.is_empty() {
        bail!(
            "no ObjectNet class overlaps ImageNet in {}",
            mappings.display()
        );
    }
    let mut items = Vec::new();
    for (label, (folder, _)) in folders.iter().enumerate() {
        let dir = base.join("images").join(folder);
        if dir.is_dir() {
            for f in image_files(&dir)? {
                items.push((f, label, Vec::new()));
            }
        }
    }
    let classnames = folders
        .iter()
        .map(|(_, name)| name.to_lowercase())
        .collect();
    Ok(LabelledDataset::listed(root, classnames, items))
}
