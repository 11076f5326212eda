//! ImageNet's class lists, compiled in from `eval/classnames/`: CLIP's curated class
//! names, the sorted WNIDs (torchvision's class order) and the WNIDs of the
//! ImageNet-A and ImageNet-R subsets. Shared by the dataset readers and the registry.

use std::sync::OnceLock;

use super::lines;

const IMAGENET_CLASSNAMES: &str = include_str!("../../../../eval/classnames/imagenet1k.txt");
const IMAGENET_WNIDS: &str = include_str!("../../../../eval/classnames/imagenet_wnids.txt");
const IMAGENET_A_WNIDS: &str = include_str!("../../../../eval/classnames/imagenet_a_wnids.txt");
const IMAGENET_R_WNIDS: &str = include_str!("../../../../eval/classnames/imagenet_r_wnids.txt");

/// CLIP's curated names of the 1000 ImageNet classes, in sorted-WNID order.
pub fn imagenet_classnames() -> &'static [String] {
    static V: OnceLock<Vec<String>> = OnceLock::new();
    V.get_or_init(|| lines(IMAGENET_CLASSNAMES))
}

/// The 1000 ImageNet WNIDs, sorted (= torchvision's class order).
pub fn imagenet_wnids() -> &'static [String] {
    static V: OnceLock<Vec<String>> = OnceLock::new();
    V.get_or_init(|| lines(IMAGENET_WNIDS))
}

/// The sorted WNIDs of ImageNet-A (`imagenet-a`) or ImageNet-R (`imagenet-r`).
pub fn imagenet_subset(name: &str) -> Vec<String> {
    match name {
        "imagenet-a" => lines(IMAGENET_A_WNIDS),
        _ => lines(IMAGENET_R_WNIDS),
    }
}
