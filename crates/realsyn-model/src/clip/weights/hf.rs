//! Hugging Face `CLIPModel` naming <-> open_clip naming, as ONE key table
//! (`key_table`) walked in either direction. HF splits the attention projection
//! into q/k/v and stores projections as `nn.Linear` ([out, in]).

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::clip::config::ClipConfig;
use crate::common::state_dict::{HostTensor, StateDict};

const HF_BLOCK_RENAMES: &[(&str, &str)] = &[
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
    ("self_attn.out_proj", "attn.out_proj"),
];

/// (HF tower prefix, open_clip tower prefix)
const TOWERS: &[(&str, &str)] = &[
    (
        "vision_model.encoder.layers.",
        "visual.transformer.resblocks.",
    ),
    ("text_model.encoder.layers.", "transformer.resblocks."),
];

/// Projections: HF `nn.Linear` [out, in] <-> open_clip's [in, out] matrices.
const HF_TRANSPOSED: &[(&str, &str)] = &[
    ("visual_projection.weight", "visual.proj"),
    ("text_projection.weight", "text_projection"),
];

const HF_RENAMES: &[(&str, &str)] = &[
    (
        "vision_model.embeddings.class_embedding",
        "visual.class_embedding",
    ),
    (
        "vision_model.embeddings.patch_embedding.weight",
        "visual.conv1.weight",
    ),
    (
        "vision_model.embeddings.position_embedding.weight",
        "visual.positional_embedding",
    ),
    ("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"),
    ("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"),
    (
        "vision_model.post_layernorm.weight",
        "visual.ln_post.weight",
    ),
    ("vision_model.post_layernorm.bias", "visual.ln_post.bias"),
    (
        "text_model.embeddings.token_embedding.weight",
        "token_embedding.weight",
    ),
    (
        "text_model.embeddings.position_embedding.weight",
        "positional_embedding",
    ),
    ("text_model.final_layer_norm.weight", "ln_final.weight"),
    ("text_model.final_layer_norm.bias", "ln_final.bias"),
    ("logit_scale", "logit_scale"),
];

/// Is this a Hugging Face CLIP state dict?
pub fn is_hf(sd: &StateDict) -> bool {
    sd.contains("vision_model.embeddings.patch_embedding.weight")
}

/// One row of the key table: a tensor's name on each side and how its value maps.
enum Key {
    /// The same tensor; `transposed` for the projections.
    One {
        hf: String,
        oc: String,
        transposed: bool,
    },
    /// HF's `{attn}q_proj/k_proj/v_proj.{suffix}` <-> open_clip's packed `oc`.
    Qkv {
        hf_attn: String,
        suffix: &'static str,
        oc: String,
    },
}

/// Every tensor of a CLIP with `blocks[t]` transformer blocks in tower `t` of
/// [`TOWERS`], named both ways.
fn key_table(blocks: [usize; 2]) -> Vec<Key> {
    let one = |hf: String, oc: String, transposed| Key::One { hf, oc, transposed };
    let mut table: Vec<Key> = HF_RENAMES
        .iter()
        .map(|(h, o)| one(h.to_string(), o.to_string(), false))
        .chain(
            HF_TRANSPOSED
                .iter()
                .map(|(h, o)| one(h.to_string(), o.to_string(), true)),
        )
        .collect();
    for ((hf_prefix, oc_prefix), n) in TOWERS.iter().zip(blocks) {
        for i in 0..n {
            let (h, o) = (format!("{hf_prefix}{i}."), format!("{oc_prefix}{i}."));
            for (hf_name, oc_name) in HF_BLOCK_RENAMES {
                for suffix in ["weight", "bias"] {
                    table.push(one(
                        format!("{h}{hf_name}.{suffix}"),
                        format!("{o}{oc_name}.{suffix}"),
                        false,
                    ));
                }
            }
            for (suffix, oc_key) in [("weight", "in_proj_weight"), ("bias", "in_proj_bias")] {
                table.push(Key::Qkv {
                    hf_attn: format!("{h}self_attn."),
                    suffix,
                    oc: format!("{o}attn.{oc_key}"),
                });
            }
        }
    }
    table
}

fn transpose_if(t: HostTensor, yes: bool) -> Result<HostTensor> {
    if yes { t.transposed() } else { Ok(t) }
}

pub fn hf_to_open_clip(mut hf: StateDict) -> Result<StateDict> {
    let blocks = [hf.count_blocks(TOWERS[0].0), hf.count_blocks(TOWERS[1].0)];
    let mut out = StateDict::default();
    for key in key_table(blocks) {
        match key {
            Key::One {
                hf: h,
                oc,
                transposed,
            } => out.insert(oc, transpose_if(hf.take(&h)?, transposed)?),
            Key::Qkv {
                hf_attn,
                suffix,
                oc,
            } => out.insert(oc, hf.take_packed_qkv(&hf_attn, suffix)?),
        }
    }
    // Buffers HF may save.
    hf.tensors.retain(|k, _| !k.ends_with("position_ids"));
    if !hf.is_empty() {
        let extra: Vec<&String> = hf.keys().take(8).collect();
        bail!(
            "Hugging Face weights contain {} unexpected tensors, e.g. {extra:?}",
            hf.len()
        );
    }
    Ok(out)
}

pub fn open_clip_to_hf(mut oc: StateDict) -> Result<StateDict> {
    let blocks = [oc.count_blocks(TOWERS[0].1), oc.count_blocks(TOWERS[1].1)];
    let mut out = StateDict::default();
    for key in key_table(blocks) {
        match key {
            Key::One {
                hf,
                oc: o,
                transposed,
            } => out.insert(hf, transpose_if(oc.take(&o)?, transposed)?),
            Key::Qkv {
                hf_attn,
                suffix,
                oc: o,
            } => {
                let qkv = oc.take(&o)?.chunk_rows(3)?;
                for (p, t) in ["q", "k", "v"].iter().zip(qkv) {
                    out.insert(format!("{hf_attn}{p}_proj.{suffix}"), t);
                }
            }
        }
    }
    oc.tensors.retain(|k, _| !k.ends_with("attn_mask"));
    if !oc.is_empty() {
        bail!(
            "open_clip weights contain tensors with no Hugging Face name: {:?}",
            oc.keys().collect::<Vec<_>>()
        );
    }
    Ok(out)
}

/// A `config.json` for `transformers.CLIPModel` matching `config`.
pub fn hf_config_json(config: &ClipConfig) -> serde_json::Value {
    let act = if config.quick_gelu {
        "quick_gelu"
    } else {
        "gelu"
    };
    let (v, t) = (&config.vision_cfg, &config.text_cfg);
    json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": config.embed_dim,
        "logit_scale_init_value": crate::clip::INIT_LOGIT_SCALE,
        "text_config": {
            "vocab_size": t.vocab_size,
            "hidden_size": t.width,
            "intermediate_size": (t.width as f64 * t.mlp_ratio) as usize,
            "num_hidden_layers": t.layers,
            "num_attention_heads": t.heads,
            "max_position_embeddings": t.context_length,
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            "projection_dim": config.embed_dim,
            // eos_token_id 2 selects HF's legacy pooling at the argmax token id: open_clip's rule.
            "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1
        },
        "vision_config": {
            "hidden_size": v.width,
            "intermediate_size": (v.width as f64 * v.mlp_ratio) as usize,
            "num_hidden_layers": v.layers,
            "num_attention_heads": v.width / v.head_width,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "num_channels": 3,
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            "projection_dim": config.embed_dim
        }
    })
}

/// Read the architecture from a Hugging Face `config.json`.
pub fn config_from_hf_json(value: &serde_json::Value) -> Result<ClipConfig> {
    let get = |path: &[&str]| -> Result<&serde_json::Value> {
        let mut v = value;
        for p in path {
            v = v
                .get(p)
                .with_context(|| format!("HF config.json has no {}", path.join(".")))?;
        }
        Ok(v)
    };
    let num = |path: &[&str]| -> Result<usize> {
        get(path)?
            .as_u64()
            .map(|n| n as usize)
            .with_context(|| format!("{} is not a number", path.join(".")))
    };
    let act = get(&["vision_config", "hidden_act"])
        .ok()
        .and_then(|v| v.as_str())
        .unwrap_or("quick_gelu");
    let v_width = num(&["vision_config", "hidden_size"])?;
    let t_width = num(&["text_config", "hidden_size"])?;
    let config = ClipConfig::from_json(
        &json!({
            "embed_dim": num(&["projection_dim"])?,
            "quick_gelu": act == "quick_gelu",
            "vision_cfg": {
                "image_size": num(&["vision_config", "image_size"])?,
                "patch_size": num(&["vision_config", "patch_size"])?,
                "layers": num(&["vision_config", "num_hidden_layers"])?,
                "width": v_width,
                "head_width": v_width / num(&["vision_config", "num_attention_heads"])?,
                "mlp_ratio": num(&["vision_config", "intermediate_size"])? as f64 / v_width as f64
            },
            "text_cfg": {
                "context_length": num(&["text_config", "max_position_embeddings"])?,
                "vocab_size": num(&["text_config", "vocab_size"])?,
                "width": t_width,
                "heads": num(&["text_config", "num_attention_heads"])?,
                "layers": num(&["text_config", "num_hidden_layers"])?,
                "mlp_ratio": num(&["text_config", "intermediate_size"])? as f64 / t_width as f64
            }
        })
        .to_string(),
    )?;
    Ok(config)
}
