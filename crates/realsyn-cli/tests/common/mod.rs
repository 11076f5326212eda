//! Helpers the CLI's end-to-end tests share (`mod common;` in each test file).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Run the `realsyn` binary, whatever its exit status.
pub fn realsyn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(args)
        .output()
        .expect("runs")
}

/// Run the `realsyn` binary; it must succeed (its stderr is shown otherwise).
pub fn ok(args: &[&str]) -> std::process::Output {
    let out = realsyn(args);
    assert!(
        out.status.success(),
        "realsyn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir` whose path ends with `suffix`, sorted.
pub fn glob(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(glob(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every file under `dir`, relative path -> bytes.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A random CLIP (tiny-gelu's shape, CLIP's vocabulary) written by `realsyn init`.
pub fn tiny_clip(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("tiny-gelu.json")).unwrap()).unwrap();
    cfg["text_cfg"]["vocab_size"] = 49408.into();
    let cfg_path = dir.join("tiny.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let weights = dir.join("tiny.safetensors");
    ok(&[
        "init",
        "--arch",
        cfg_path.to_str().unwrap(),
        "--output",
        weights.to_str().unwrap(),
    ]);
    weights
}

/// Debian gimp-help-en's manual pages.
pub const GIMP: &str = "/usr/share/gimp/2.0/help/en";

/// `n` GIMP pages with the images they show, copied under `dir/en`.
pub fn gimp_pages(dir: &Path, prefix: &str, n: usize) -> PathBuf {
    let root = dir.join("en");
    let img = regex::Regex::new(r#"src="(images/[^"]+)""#).unwrap();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(GIMP)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    pages.sort();
    for page in pages.into_iter().take(n) {
        let html = std::fs::read_to_string(&page).unwrap();
        for c in img.captures_iter(&html) {
            let (src, dst) = (Path::new(GIMP).join(&c[1]), root.join(&c[1]));
            if src.is_file() {
                std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
                std::fs::copy(&src, &dst).unwrap();
            }
        }
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(&page, root.join(page.file_name().unwrap())).unwrap();
    }
    root
}
