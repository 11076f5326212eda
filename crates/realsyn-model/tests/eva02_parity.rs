//! EVA02-CLIP against open_clip 3.3.0 + timm 1.0.31 with the same weights: image
//! embeddings of real photos (scikit-image) and text embeddings of real sentences
//! within 1e-4 (max abs diff, unnormalised), for
//!
//! - EVA02-B-16 at full size (149.69M parameters, counter-generated weights: the same
//!   generator runs in `tests/peer/eva02_fixture.py`);
//! - reduced configs of the E-14-plus design (post-norm, fused qkv, GELU MLP at ratio
//!   15360/1792) from f16 safetensors and an f16 torch pickle, and of the L-14-336 design
//!   (RoPE on a 24x24 grid rescaled to 16x16) from bf16 safetensors and from the
//!   EVA-CLIP release's key layout;
//!
//! plus parameter counts of every shipped config (without allocating E-14-plus), clear
//! errors for bad weights, and export round trips.
//! Fixtures: `.peer-venv/bin/python tests/peer/eva02_fixture.py`.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use realsyn_model::backend::Cpu;
use realsyn_model::clip::weights::{
    WeightFormat, infer_config, param_count, param_shapes_of, read_weights, write_weights,
};
use realsyn_model::common::state_dict::{HostTensor, StateDict};
use realsyn_model::{Clip, ClipConfig, ClipTokenizer};
use safetensors::SafeTensors;

mod common;
use common::generated;

const TOL: f32 = 1e-4;
const PHOTOS: [&str; 4] = ["astronaut", "coffee", "chelsea", "rocket"];
/// OpenAI's CLIP normalisation, which open_clip's EVA02 configs use.
const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eva02")
        .join(name)
}

/// The cropped photos through ToTensor + Normalize (exact in f32, as torch does it).
fn photos(size: usize) -> Tensor<Cpu, 4> {
    let mut data = Vec::new();
    for name in PHOTOS {
        let img = image::open(fixture(&format!("photos/{name}-{size}.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(img.dimensions(), (size as u32, size as u32));
        for c in 0..3 {
            for p in img.pixels() {
                data.push((p.0[c] as f32 / 255.0 - MEAN[c]) / STD[c]);
            }
        }
    }
    Tensor::from_data(
        TensorData::new(data, [PHOTOS.len(), 3, size, size]),
        &Default::default(),
    )
}

struct Expected {
    tokens: Tensor<Cpu, 2, Int>,
    token_ids: Vec<i64>,
    image_features: Vec<f32>,
    text_features: Vec<f32>,
}

fn expected(name: &str) -> Expected {
    let bytes = std::fs::read(fixture(&format!("{name}.io.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |k: &str| -> Vec<f32> {
        st.tensor(k)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let tok = st.tensor("tokens").unwrap();
    let ids: Vec<i64> = tok
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Expected {
        tokens: Tensor::from_data(
            TensorData::new(ids.clone(), tok.shape().to_vec()),
            &Default::default(),
        ),
        token_ids: ids,
        image_features: f32s("image_features"),
        text_features: f32s("text_features"),
    }
}

fn to_vec<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Rows scaled to unit length (random-init towers have tiny outputs: their directions
/// are what a wrong layer would change).
fn unit_rows(v: &[f32], width: usize) -> Vec<f32> {
    v.chunks(width)
        .flat_map(|r| {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter().map(move |x| x / n)
        })
        .collect()
}

/// Unnormalised features within 1e-4 of open_clip's, and so are their directions.
fn assert_matches_open_clip(model: &Clip<Cpu>, name: &str, image_size: usize, what: &str) {
    let exp = expected(name);
    let width = model.config.embed_dim;
    let img = to_vec(model.encode_image(photos(image_size)));
    let txt = to_vec(model.encode_text(exp.tokens.clone()));
    for (kind, ours, theirs) in [
        ("image", &img, &exp.image_features),
        ("text", &txt, &exp.text_features),
    ] {
        let raw = max_abs_diff(ours, theirs);
        let unit = max_abs_diff(&unit_rows(ours, width), &unit_rows(theirs, width));
        let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs()));
        eprintln!(
            "{what}: {kind} max|diff| {raw:.2e} (features up to {scale:.3}), normalised {unit:.2e}"
        );
        assert!(
            raw <= TOL && unit <= TOL,
            "{what}: {kind} features differ by {raw} ({unit} normalised)"
        );
    }
}

fn tiny(name: &str) -> ClipConfig {
    ClipConfig::from_name_or_path(fixture(&format!("{name}.json")).to_str().unwrap()).unwrap()
}

fn load(file: &str, config: &ClipConfig) -> anyhow::Result<Clip<Cpu>> {
    let loaded = read_weights(&fixture(file))?;
    Clip::from_open_clip(config, loaded.state_dict, &Default::default())
}

#[test]
fn eva02_b16_at_full_size_matches_open_clip_on_photos_and_sentences() {
    let config = ClipConfig::from_name_or_path("EVA02-B-16").unwrap();
    let mut sd = StateDict::default();
    for (key, shape) in param_shapes_of(&config).unwrap() {
        let t = generated(&key, &shape);
        sd.insert(key, t);
    }
    // Without --arch, the shapes name the shipped config.
    assert_eq!(infer_config(&sd, false).unwrap(), config);
    let model = Clip::<Cpu>::from_open_clip(&config, sd, &Default::default()).unwrap();

    // Our tokenizer gives open_clip's ids for the real sentences.
    let sentences = std::fs::read_to_string(fixture("sentences.txt")).unwrap();
    let sentences: Vec<&str> = sentences.lines().collect();
    let tokenizer = ClipTokenizer::for_text_tower(&config.text_cfg).unwrap();
    let ours: Vec<i64> = tokenizer
        .tokenize_batch(&sentences)
        .into_iter()
        .flatten()
        .map(|t| t as i64)
        .collect();
    assert_eq!(ours, expected("b16-full").token_ids);

    assert_matches_open_clip(&model, "b16-full", 224, "EVA02-B-16 (full size)");
}

#[test]
fn e14_plus_design_from_f16_safetensors_and_an_f16_torch_pickle() {
    let config = tiny("e-design-tiny");
    let eva = config.vision_cfg.eva.unwrap();
    assert!(eva.post_norm && eva.qkv_fused && !eva.swiglu && eva.rope_ref_grid.is_none());
    let model = load("e-design-tiny.safetensors", &config).unwrap();
    assert_matches_open_clip(
        &model,
        "e-design-tiny",
        224,
        "E-14-plus design, f16 safetensors",
    );
    let model = load("e-design-tiny.pt", &config).unwrap();
    assert_matches_open_clip(&model, "e-design-tiny", 224, "E-14-plus design, f16 pickle");
}

#[test]
fn l14_336_design_with_rope_grid_rescaling_from_bf16_and_the_eva_clip_release_layout() {
    let config = tiny("l336-design-tiny");
    assert_eq!(
        config.vision_cfg.image_size / config.vision_cfg.patch_size,
        24
    );
    assert_eq!(config.vision_cfg.eva.unwrap().rope_ref_grid, Some(16));
    let model = load("l336-design-tiny.safetensors", &config).unwrap();
    assert_matches_open_clip(&model, "l336-design-tiny", 336, "L-14-336 design, bf16");

    let release = read_weights(&fixture("l336-design-tiny.eva-clip.safetensors")).unwrap();
    assert_eq!(release.format, WeightFormat::EvaClipRelease);
    let model =
        Clip::<Cpu>::from_open_clip(&config, release.state_dict, &Default::default()).unwrap();
    assert_matches_open_clip(
        &model,
        "l336-design-tiny",
        336,
        "L-14-336 design, EVA-CLIP release layout",
    );
}

#[test]
fn parameter_counts_equal_open_clip_without_allocating() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("params.json")).unwrap()).unwrap();
    for (name, count) in json["params"].as_object().unwrap() {
        let config = ClipConfig::from_name_or_path(name).unwrap();
        let ours = param_count(&config).unwrap();
        eprintln!("{name}: {ours} parameters");
        assert_eq!(ours as u64, count.as_u64().unwrap(), "{name}");
    }
}

#[test]
fn bad_weights_name_the_key_and_the_expected_shape() {
    let config = tiny("l336-design-tiny");
    let good = || {
        read_weights(&fixture("l336-design-tiny.safetensors"))
            .unwrap()
            .state_dict
    };
    let dev = Default::default();

    let mut sd = good();
    sd.tensors.remove("visual.trunk.blocks.1.mlp.fc1_g.weight");
    let err = format!(
        "{:#}",
        Clip::<Cpu>::from_open_clip(&config, sd, &dev).unwrap_err()
    );
    assert!(
        err.contains("visual.trunk.blocks.1.mlp.fc1_g.weight") && err.contains("[170, 64]"),
        "{err}"
    );

    let mut sd = good();
    sd.insert(
        "visual.trunk.pos_embed",
        HostTensor::new(vec![1, 197, 64], vec![0.0; 197 * 64]),
    );
    let err = format!(
        "{:#}",
        Clip::<Cpu>::from_open_clip(&config, sd, &dev).unwrap_err()
    );
    assert!(
        err.contains("visual.trunk.pos_embed") && err.contains("[1, 577, 64]"),
        "{err}"
    );

    // A CLIP ViT file given as EVA02, and the other way round.
    let clip = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity/tiny-gelu.safetensors");
    let sd = read_weights(&clip).unwrap().state_dict;
    let err = format!(
        "{:#}",
        Clip::<Cpu>::from_open_clip(&config, sd, &dev).unwrap_err()
    );
    assert!(
        err.contains("open_clip ViT") && err.contains("EVA02"),
        "{err}"
    );
    let vit = ClipConfig::from_name_or_path("ViT-B-32").unwrap();
    let err = format!(
        "{:#}",
        Clip::<Cpu>::from_open_clip(&vit, good(), &dev).unwrap_err()
    );
    assert!(err.contains("EVA02-CLIP (visual.trunk.*)"), "{err}");

    // Weights of an unshipped EVA02 shape need --arch.
    let err = format!("{:#}", infer_config(&good(), false).unwrap_err());
    assert!(err.contains("--arch"), "{err}");
}

#[test]
fn exported_and_saved_eva02_weights_load_back_to_the_same_outputs() {
    let config = tiny("e-design-tiny");
    let model = load("e-design-tiny.safetensors", &config).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // open_clip safetensors (what `realsyn convert --to open_clip` writes).
    let path = dir.path().join("open_clip.safetensors");
    write_weights(
        &path,
        &model.to_open_clip().unwrap(),
        &config,
        WeightFormat::OpenClip,
    )
    .unwrap();
    let back = Clip::<Cpu>::from_open_clip(
        &config,
        read_weights(&path).unwrap().state_dict,
        &Default::default(),
    )
    .unwrap();
    assert_matches_open_clip(
        &back,
        "e-design-tiny",
        224,
        "exported open_clip safetensors",
    );

    // A realsyn checkpoint carries its EVA02 config: no --arch needed.
    let ckpt = dir.path().join("model.safetensors");
    model.save(&ckpt).unwrap();
    let back = Clip::<Cpu>::load(&ckpt, None, &Default::default()).unwrap();
    assert_eq!(back.config, config);
    assert_matches_open_clip(&back, "e-design-tiny", 224, "realsyn checkpoint");

    let err = write_weights(
        &dir.path().join("hf"),
        &model.to_open_clip().unwrap(),
        &config,
        WeightFormat::HuggingFace,
    )
    .unwrap_err();
    assert!(err.to_string().contains("Hugging Face"), "{err}");
}
