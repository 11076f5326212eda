//! Image features, text features and logits equal open_clip's (max abs diff <= 1e-4)
//! for weights read from open_clip safetensors, a torch `.pt` state dict and a Hugging
//! Face `CLIPModel` directory; saved and exported weights load back to the same
//! outputs. Fixtures: `python tests/peer/model_parity.py fixtures`.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use realsyn_model::backend::Cpu;
use realsyn_model::clip::weights::{WeightFormat, read_weights, write_weights};
use realsyn_model::{Clip, ClipConfig};
use safetensors::SafeTensors;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity")
        .join(name)
}

struct Io {
    images: Tensor<Cpu, 4>,
    tokens: Tensor<Cpu, 2, Int>,
    image_features: Vec<f32>,
    text_features: Vec<f32>,
    logits: Vec<f32>,
}

fn read_io(name: &str) -> Io {
    let bytes = std::fs::read(fixture(&format!("{name}.io.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |k: &str| -> (Vec<f32>, Vec<usize>) {
        let v = st.tensor(k).unwrap();
        (
            v.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            v.shape().to_vec(),
        )
    };
    let dev = Default::default();
    let (img, img_shape) = f32s("images");
    let tok = st.tensor("tokens").unwrap();
    let tok_data: Vec<i64> = tok
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Io {
        images: Tensor::from_data(TensorData::new(img, img_shape), &dev),
        tokens: Tensor::from_data(TensorData::new(tok_data, tok.shape().to_vec()), &dev),
        image_features: f32s("image_features").0,
        text_features: f32s("text_features").0,
        logits: f32s("logits_per_image").0,
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn to_vec<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().unwrap()
}

fn assert_matches_open_clip(model: &Clip<Cpu>, io: &Io, what: &str) {
    let img = to_vec(model.encode_image(io.images.clone()));
    let txt = to_vec(model.encode_text(io.tokens.clone()));
    let logits = to_vec(
        model
            .forward(io.images.clone(), io.tokens.clone())
            .logits_per_image(),
    );
    let (di, dt, dl) = (
        max_abs_diff(&img, &io.image_features),
        max_abs_diff(&txt, &io.text_features),
        max_abs_diff(&logits, &io.logits),
    );
    println!("{what}: max |diff| image {di:.2e}, text {dt:.2e}, logits {dl:.2e}");
    assert!(
        di <= TOL && dt <= TOL && dl <= TOL,
        "{what}: image {di}, text {dt}, logits {dl} exceed {TOL}"
    );
}

fn config(name: &str) -> String {
    fixture(&format!("{name}.json"))
        .to_string_lossy()
        .into_owned()
}

/// Load fixture weights `file` with the architecture of fixture config `arch`.
fn load_fixture(file: &str, arch: &str) -> Clip<Cpu> {
    Clip::<Cpu>::load(&fixture(file), Some(&config(arch)), &Default::default()).unwrap()
}

#[test]
fn open_clip_safetensors_gelu() {
    let model = load_fixture("tiny-gelu.safetensors", "tiny-gelu");
    assert_matches_open_clip(&model, &read_io("tiny-gelu"), "tiny-gelu safetensors");
}

#[test]
fn open_clip_safetensors_quickgelu() {
    let model = load_fixture("tiny-quickgelu.safetensors", "tiny-quickgelu");
    assert!(model.config.quick_gelu);
    assert_matches_open_clip(
        &model,
        &read_io("tiny-quickgelu"),
        "tiny-quickgelu safetensors",
    );
}

#[test]
fn torch_pickle_through_burn_store() {
    let model = load_fixture("tiny-quickgelu.pt", "tiny-quickgelu");
    assert_matches_open_clip(&model, &read_io("tiny-quickgelu"), "tiny-quickgelu .pt");
}

#[test]
fn hugging_face_directory_with_its_config() {
    let dev = Default::default();
    let loaded = read_weights(&fixture("tiny-gelu-hf")).unwrap();
    assert_eq!(loaded.format, WeightFormat::HuggingFace);
    let expected = ClipConfig::from_name_or_path(&config("tiny-gelu")).unwrap();
    assert_eq!(
        loaded.config.as_ref(),
        Some(&expected),
        "architecture read from config.json"
    );
    let model = Clip::<Cpu>::load(&fixture("tiny-gelu-hf"), None, &dev).unwrap();
    assert_matches_open_clip(&model, &read_io("tiny-gelu"), "tiny-gelu HF");
}

#[test]
fn saved_and_exported_weights_load_back_identically() {
    let dev = Default::default();
    let model = load_fixture("tiny-gelu.safetensors", "tiny-gelu");
    let io = read_io("tiny-gelu");
    let dir = tempfile::tempdir().unwrap();

    // realsyn checkpoint: the config travels inside, so no --arch is needed.
    let ckpt = dir.path().join("model.safetensors");
    model.save(&ckpt).unwrap();
    assert_eq!(read_weights(&ckpt).unwrap().format, WeightFormat::Realsyn);
    assert_matches_open_clip(
        &Clip::<Cpu>::load(&ckpt, None, &dev).unwrap(),
        &io,
        "realsyn checkpoint",
    );

    // open_clip export: byte-for-byte the same tensors as the open_clip original.
    let exported = dir.path().join("open_clip.safetensors");
    write_weights(
        &exported,
        &model.to_open_clip().unwrap(),
        &model.config,
        WeightFormat::OpenClip,
    )
    .unwrap();
    let original = read_weights(&fixture("tiny-gelu.safetensors"))
        .unwrap()
        .state_dict;
    assert_eq!(read_weights(&exported).unwrap().state_dict, original);

    // Hugging Face export: a directory that loads back to the same outputs.
    let hf = dir.path().join("hf");
    write_weights(
        &hf,
        &model.to_open_clip().unwrap(),
        &model.config,
        WeightFormat::HuggingFace,
    )
    .unwrap();
    assert_matches_open_clip(
        &Clip::<Cpu>::load(&hf, None, &dev).unwrap(),
        &io,
        "HF export",
    );
}

#[test]
fn wrong_architecture_is_a_clear_error() {
    let dev = Default::default();
    let err = Clip::<Cpu>::load(
        &fixture("tiny-gelu.safetensors"),
        Some(&config("tiny-quickgelu")),
        &dev,
    )
    .err()
    .unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("shape"), "{msg}");
    let err = Clip::<Cpu>::load(&fixture("does-not-exist.safetensors"), None, &dev)
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("not found"));
}
