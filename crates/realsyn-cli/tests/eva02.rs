//! EVA02-CLIP everywhere a CLIP goes, through the binary, with the reduced L-14-336
//! design of `tests/fixtures/eva02` (random weights exported by open_clip + timm):
//! `embed` of real photos and sentences equals open_clip's embeddings, `convert` from
//! the EVA-CLIP release layout, `eval` zero-shot on an ImageFolder, and the builder
//! with EVA02 as its image, text and pairing encoder.

mod common;

use std::path::{Path, PathBuf};

use common::{GIMP, gimp_pages, ok, realsyn};
use realsyn_io::npy::read_npy;
use safetensors::SafeTensors;

const PHOTOS: [&str; 4] = ["astronaut", "coffee", "chelsea", "rocket"];

fn eva(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eva02")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// open_clip's features of the fixture, L2-normalised (what `embed --normalize` writes).
fn expected(key: &str) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(eva("l336-design-tiny.io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(key).unwrap();
    let width = t.shape()[1];
    let values: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    values
        .chunks(width)
        .map(|r| {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter().map(|x| x / n).collect()
        })
        .collect()
}

fn assert_rows_match(npy: &Path, expected: &[Vec<f32>], what: &str) {
    let (data, shape) = read_npy::<f32>(npy).unwrap();
    assert_eq!(shape, vec![expected.len(), expected[0].len()], "{what}");
    let diff = data
        .iter()
        .zip(expected.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("{what}: max|diff| {diff:.2e} against open_clip");
    assert!(diff <= 1e-4, "{what}: {diff}");
}

/// The four 336-px photos, named so that `embed` lists them in fixture order.
fn photos(dir: &Path) -> PathBuf {
    let out = dir.join("photos");
    std::fs::create_dir_all(&out).unwrap();
    for (i, name) in PHOTOS.iter().enumerate() {
        std::fs::copy(
            eva(&format!("photos/{name}-336.png")),
            out.join(format!("{i}-{name}.png")),
        )
        .unwrap();
    }
    out
}

#[test]
fn embed_and_convert_eva02_match_open_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let images = photos(tmp.path());
    let arch = eva("l336-design-tiny.json");
    let release = eva("l336-design-tiny.eva-clip.safetensors");

    // Straight from the EVA-CLIP release layout.
    let img = tmp.path().join("img.npy");
    let args = [
        "embed",
        "--arch",
        &arch,
        "--weights",
        &release,
        "--normalize",
    ];
    ok(&[
        &args[..],
        &[
            "--images",
            images.to_str().unwrap(),
            "--output",
            img.to_str().unwrap(),
        ],
    ]
    .concat());
    assert_rows_match(&img, &expected("image_features"), "embed --images");
    let txt = tmp.path().join("txt.npy");
    ok(&[
        &args[..],
        &[
            "--texts",
            &eva("sentences.txt"),
            "--output",
            txt.to_str().unwrap(),
        ],
    ]
    .concat());
    assert_rows_match(&txt, &expected("text_features"), "embed --texts");

    // convert -> a realsyn checkpoint that carries its EVA02 config (no --arch after).
    let ckpt = tmp.path().join("eva.safetensors");
    ok(&[
        "convert",
        "--input",
        &release,
        "--arch",
        &arch,
        "--output",
        ckpt.to_str().unwrap(),
    ]);
    let again = tmp.path().join("again.npy");
    ok(&[
        "embed",
        "--weights",
        ckpt.to_str().unwrap(),
        "--normalize",
        "--images",
        images.to_str().unwrap(),
        "--output",
        again.to_str().unwrap(),
    ]);
    assert_rows_match(
        &again,
        &expected("image_features"),
        "embed of the converted checkpoint",
    );

    // No Hugging Face layout for EVA02: a clear refusal.
    let o = realsyn(&[
        "convert",
        "--input",
        &release,
        "--arch",
        &arch,
        "--output",
        tmp.path().join("hf").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Hugging Face"));
}

#[test]
fn eval_zero_shot_with_an_eva02_model() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("folder");
    for (class, name) in [
        ("cat", "chelsea"),
        ("cup", "coffee"),
        ("rocket", "rocket"),
        ("person", "astronaut"),
    ] {
        let dir = root.join("test").join(class);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            eva(&format!("photos/{name}-336.png")),
            dir.join(format!("{name}.png")),
        )
        .unwrap();
    }
    let out = tmp.path().join("out");
    ok(&[
        "eval",
        "--model",
        &eva("l336-design-tiny.safetensors"),
        "--arch",
        &eva("l336-design-tiny.json"),
        "--suite",
        "zero-shot",
        "--datasets",
        // A SLIP key gives the prompt templates (an ImageFolder brings none).
        &format!("cifar10=imagefolder:{}", root.display()),
        "--output",
        out.to_str().unwrap(),
    ]);
    let mut found = false;
    for e in walk(&out) {
        if e.extension().is_some_and(|x| x == "json") {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&e).unwrap()).unwrap();
            if let Some(acc) = v["metrics"]["acc1"].as_f64() {
                assert!((0.0..=1.0).contains(&acc), "{v}");
                found = true;
            }
        }
    }
    assert!(found, "no zero-shot result under {}", out.display());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_builder_dedups_clusters_and_pairs_with_eva02() {
    assert!(Path::new(GIMP).exists(), "run scripts/setup-system.sh");
    let tmp = tempfile::tempdir().unwrap();
    let pages = gimp_pages(tmp.path(), "gimp-tool", 6);
    let store = tmp.path().join("store");
    let weights = eva("l336-design-tiny.eva-clip.safetensors");
    let arch = eva("l336-design-tiny.json");
    ok(&[
        "build",
        "all",
        "--input",
        pages.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--image-encoder",
        &weights,
        "--image-encoder-arch",
        &arch,
        "--text-encoder",
        &weights,
        "--text-encoder-arch",
        &arch,
        "--pair-encoder",
        &weights,
        "--pair-encoder-arch",
        &arch,
    ]);
    let pairs: Vec<serde_json::Value> = walk(&store.join("retrieve"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "pairs.jsonl"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!pairs.is_empty(), "no image was paired");
    assert!(
        pairs
            .iter()
            .all(|r| r["texts"].as_array().unwrap().len() == 3)
    );
    // One encoder for images and texts: the dedup embeddings were reused.
    let clusters = walk(&store.join("cluster-text"))
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "clusters.json"))
        .unwrap();
    let summary = std::fs::read_to_string(clusters).unwrap();
    assert!(summary.contains("reused"), "{summary}");
}
