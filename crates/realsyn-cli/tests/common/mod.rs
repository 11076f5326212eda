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
