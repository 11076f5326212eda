//! EVA02-CLIP everywhere a CLIP goes, through the binary, with the reduced L-14-336
//! design of `tests/fixtures/eva02` (random weights exported by open_clip + timm):
//! `embed` of real photos and sentences equals open_clip's embeddings, `convert` from
//! the EVA-CLIP release layout, `eval` zero-shot on an ImageFolder, and the builder
//! with EVA02 as its image, text and pairing encoder.

mod common;

use std::path::{Path, PathBuf};

use common::{GIMP, gimp_pages, glob, ok, realsyn};
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

/// The three evaluation protocols with an EVA02 model: zero-shot and linear probe on
/// an ImageFolder of the photos (5 training copies, 1 test copy per class), retrieval
/// on a Karpathy-format set pairing each photo with its sentence.
#[test]
fn eval_zero_shot_linear_probe_and_retrieval_with_an_eva02_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (cls, ret) = (tmp.path().join("cls"), tmp.path().join("ret"));
    let sentences = std::fs::read_to_string(eva("sentences.txt")).unwrap();
    let mut karpathy = Vec::new();
    std::fs::create_dir_all(&ret).unwrap();
    for (i, (class, name)) in [
        ("person", "astronaut"),
        ("cup", "coffee"),
        ("cat", "chelsea"),
        ("rocket", "rocket"),
    ]
    .into_iter()
    .enumerate()
    {
        let photo = eva(&format!("photos/{name}-336.png"));
        for (split, copies) in [("train", 5), ("test", 1)] {
            let dir = cls.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for k in 0..copies {
                std::fs::copy(&photo, dir.join(format!("{name}{k}.png"))).unwrap();
            }
        }
        std::fs::copy(&photo, ret.join(format!("{name}.png"))).unwrap();
        karpathy.push(
            serde_json::json!({"filename": format!("{name}.png"), "split": "test",
            "sentences": [{"raw": sentences.lines().nth(i).unwrap()}]}),
        );
    }
    std::fs::write(
        ret.join("dataset.json"),
        serde_json::json!({ "images": karpathy }).to_string(),
    )
    .unwrap();
    let out = tmp.path().join("out");
    ok(&[
        "eval",
        "--model",
        &eva("l336-design-tiny.safetensors"),
        "--arch",
        &eva("l336-design-tiny.json"),
        "--suite",
        "zero-shot,linear-probe,retrieval",
        // A SLIP key gives the prompt templates (an ImageFolder brings none).
        "--datasets",
        &format!("cifar10=imagefolder:{}", cls.display()),
        "--datasets",
        &format!("flickr30k=karpathy:{}", ret.display()),
        "--output",
        out.to_str().unwrap(),
    ]);
    let metrics = |file: &str| -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(file)).unwrap()).unwrap();
        v["metrics"].clone()
    };
    let zs = metrics("cifar10_zeroshot_classification.json");
    assert_eq!(zs["n"], 4, "{zs}");
    // The test photos are copies of training photos: distinct EVA02 features separate them.
    let lp = metrics("cifar10_linear_probe.json");
    assert_eq!(
        (lp["n_train"].as_u64(), lp["acc1"].as_f64()),
        (Some(20), Some(1.0)),
        "{lp}"
    );
    let ret = metrics("flickr30k_zeroshot_retrieval.json");
    for side in ["image", "text"] {
        for k in [1, 5, 10] {
            let r = ret[format!("{side}_retrieval_recall@{k}")].as_f64();
            assert!(r.is_some_and(|r| (0.0..=1.0).contains(&r)), "{ret}");
        }
    }
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
    let pairs: Vec<serde_json::Value> = glob(&store.join("retrieve"), "/pairs.jsonl")
        .into_iter()
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
    let clusters = glob(&store.join("cluster-text"), "/clusters.json")
        .into_iter()
        .next()
        .unwrap();
    let summary = std::fs::read_to_string(clusters).unwrap();
    assert!(summary.contains("reused"), "{summary}");
}
