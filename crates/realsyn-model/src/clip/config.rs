//! Model configuration in open_clip's `model_configs/*.json` format, so any config a
//! user already has loads as is. The shipped ones live in `model_configs/`.
//!
//! An EVA02-CLIP config names its image tower by a timm model (`timm_model_name`);
//! loading it resolves that name into explicit fields (`width`, `layers`, `patch_size`,
//! `head_width`, `mlp_ratio` and the `eva` design flags, see `crate::eva02::config`),
//! so the network built is the one written in the config, never a hidden default.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub use crate::eva02::config::EvaDesign;

/// `embed_dim` + `vision_cfg` + `text_cfg`, as open_clip writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub embed_dim: usize,
    /// QuickGELU (x * sigmoid(1.702 x)) instead of GELU: needed for OpenAI's weights.
    #[serde(default)]
    pub quick_gelu: bool,
    pub vision_cfg: VisionConfig,
    pub text_cfg: TextConfig,
    /// open_clip's `CustomTextCLIP` (every EVA02 config): the same text tower, its
    /// weights under `text.` instead of at the top level.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub custom_text: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    #[serde(deserialize_with = "square_size", serialize_with = "plain_size")]
    pub image_size: usize,
    /// Patch side, depth and width: given for open_clip's ViT, resolved from the timm
    /// name for an EVA02 tower (open_clip's EVA02 JSONs leave them out).
    #[serde(
        default,
        deserialize_with = "square_size",
        serialize_with = "plain_size"
    )]
    pub patch_size: usize,
    #[serde(default)]
    pub layers: usize,
    #[serde(default)]
    pub width: usize,
    #[serde(default = "default_head_width")]
    pub head_width: usize,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// The image tower is timm's `Eva` (EVA02-CLIP) with this design, instead of
    /// open_clip's ViT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eva: Option<EvaDesign>,
    /// open_clip's timm tower fields: the model name (resolved into the fields above),
    /// its pooling (class token only) and extra projection (none: timm's own head
    /// projects to `embed_dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timm_model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timm_model_pretrained: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timm_pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timm_proj: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timm_proj_bias: Option<bool>,
    /// Options of open_clip we do not implement; present only to reject them clearly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ls_init_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_ln_after_pool: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attentional_pool: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_ln_pre: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    #[serde(default = "default_context_length")]
    pub context_length: usize,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ls_init_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proj_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_causal_mask: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_cls: Option<bool>,
}

fn default_head_width() -> usize {
    64
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_context_length() -> usize {
    77
}
fn default_vocab_size() -> usize {
    49408
}

/// open_clip accepts `224` or `[224, 224]`; we support square inputs.
fn square_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        One(usize),
        Two([usize; 2]),
    }
    match Size::deserialize(d)? {
        Size::One(s) => Ok(s),
        Size::Two([a, b]) if a == b => Ok(a),
        Size::Two([a, b]) => Err(serde::de::Error::custom(format!(
            "non-square size [{a}, {b}] is not supported"
        ))),
    }
}
fn plain_size<S: serde::Serializer>(v: &usize, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*v as u64)
}

/// (name, JSON) of the configs shipped with realsyn.
pub const BUILTIN_CONFIGS: &[(&str, &str)] = &[
    (
        "ViT-B-32",
        include_str!("../../model_configs/ViT-B-32.json"),
    ),
    (
        "ViT-B-32-quickgelu",
        include_str!("../../model_configs/ViT-B-32-quickgelu.json"),
    ),
    (
        "ViT-B-16",
        include_str!("../../model_configs/ViT-B-16.json"),
    ),
    (
        "ViT-B-16-quickgelu",
        include_str!("../../model_configs/ViT-B-16-quickgelu.json"),
    ),
    (
        "ViT-L-14",
        include_str!("../../model_configs/ViT-L-14.json"),
    ),
    (
        "ViT-L-14-quickgelu",
        include_str!("../../model_configs/ViT-L-14-quickgelu.json"),
    ),
    (
        "ViT-L-14-336",
        include_str!("../../model_configs/ViT-L-14-336.json"),
    ),
    (
        "EVA02-B-16",
        include_str!("../../model_configs/EVA02-B-16.json"),
    ),
    (
        "EVA02-L-14",
        include_str!("../../model_configs/EVA02-L-14.json"),
    ),
    (
        "EVA02-L-14-336",
        include_str!("../../model_configs/EVA02-L-14-336.json"),
    ),
    (
        "EVA02-E-14",
        include_str!("../../model_configs/EVA02-E-14.json"),
    ),
    (
        "EVA02-E-14-plus",
        include_str!("../../model_configs/EVA02-E-14-plus.json"),
    ),
];

impl ClipConfig {
    /// A shipped config by name (`ViT-B-32`, ...) or a path to an open_clip JSON file.
    pub fn from_name_or_path(arch: &str) -> Result<Self> {
        if let Some((_, json)) = BUILTIN_CONFIGS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(arch))
        {
            return Self::from_json(json);
        }
        let path = Path::new(arch);
        if path.exists() {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("reading model config {}", path.display()))?;
            return Self::from_json(&json).with_context(|| format!("in {}", path.display()));
        }
        let names: Vec<&str> = BUILTIN_CONFIGS.iter().map(|(n, _)| *n).collect();
        bail!(
            "unknown architecture {arch:?}: use one of {} or the path of an open_clip model config JSON",
            names.join(", ")
        )
    }

    pub fn from_json(json: &str) -> Result<Self> {
        let mut cfg: ClipConfig =
            serde_json::from_str(json).context("parsing model config JSON")?;
        resolve_timm_tower(&mut cfg.vision_cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The image tower is EVA02's (timm `Eva`) rather than open_clip's ViT.
    pub fn is_eva(&self) -> bool {
        self.vision_cfg.eva.is_some()
    }

    /// Where the text tower's weights sit in an open_clip state dict.
    pub fn text_prefix(&self) -> &'static str {
        if self.custom_text { "text." } else { "" }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Reject open_clip options this implementation does not model, instead of
    /// silently building a different network.
    pub fn validate(&self) -> Result<()> {
        let v = &self.vision_cfg;
        let t = &self.text_cfg;
        if t.hf_model_name.is_some() {
            bail!("Hugging Face text towers are not supported: only open_clip's text transformer");
        }
        if let Some(name) = &v.timm_model_name
            && v.eva.is_none()
        {
            bail!(
                "timm image tower {name:?} is not supported: realsyn builds open_clip's ViT and the EVA02-CLIP towers ({})",
                crate::eva02::config::known_timm_towers()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(eva) = &v.eva {
            eva.validate()?;
            if eva.rope_ref_grid.is_some() && v.head_width % 4 != 0 {
                bail!(
                    "EVA02 RoPE splits each head into 4 parts: head_width {} is not a multiple of 4",
                    v.head_width
                );
            }
        }
        if v.eva.is_some()
            && (v.timm_pool.as_deref().is_some_and(|p| p != "token")
                || v.timm_proj.as_deref().is_some_and(|p| !p.is_empty()))
        {
            bail!(
                "EVA02 towers are supported with class-token pooling and timm's own head (timm_pool \"token\", timm_proj null); got pool {:?}, proj {:?}",
                v.timm_pool,
                v.timm_proj
            );
        }
        if v.ls_init_value.is_some() || t.ls_init_value.is_some() {
            bail!("layer scale (ls_init_value) is not supported");
        }
        if v.pool_type.as_deref().is_some_and(|p| p != "tok")
            || v.final_ln_after_pool == Some(true)
            || v.attentional_pool == Some(true)
            || v.no_ln_pre == Some(true)
        {
            bail!("only CLS-token pooling with ln_pre / ln_post is supported for the image tower");
        }
        if t.pool_type.as_deref().is_some_and(|p| p != "argmax")
            || t.proj_bias == Some(true)
            || t.no_causal_mask == Some(true)
            || t.embed_cls == Some(true)
        {
            bail!(
                "only argmax (EOT) pooling, causal mask and bias-free projection are supported for the text tower"
            );
        }
        if v.patch_size == 0 || v.head_width == 0 || t.heads == 0 {
            bail!(
                "the tower sizes are incomplete (patch_size {}, head_width {}, text heads {}): \
                 give the architecture (--arch NAME or a model config .json)",
                v.patch_size,
                v.head_width,
                t.heads
            );
        }
        if v.image_size % v.patch_size != 0 {
            bail!(
                "image_size {} is not a multiple of patch_size {}",
                v.image_size,
                v.patch_size
            );
        }
        if v.width % v.head_width != 0 {
            bail!(
                "vision width {} is not a multiple of head_width {}",
                v.width,
                v.head_width
            );
        }
        if t.width % t.heads != 0 {
            bail!(
                "text width {} is not a multiple of heads {}",
                t.width,
                t.heads
            );
        }
        Ok(())
    }

    pub fn vision_heads(&self) -> usize {
        self.vision_cfg.width / self.vision_cfg.head_width
    }
    pub fn grid_size(&self) -> usize {
        self.vision_cfg.image_size / self.vision_cfg.patch_size
    }
}

/// Fill an EVA02 tower's fields from its timm name when the config gives only the name
/// (open_clip's own JSON). A config that already carries `eva` is taken as written;
/// an unknown timm name is left for `validate` to reject.
fn resolve_timm_tower(v: &mut VisionConfig) -> Result<()> {
    let Some(name) = v.timm_model_name.as_deref() else {
        return Ok(());
    };
    if v.eva.is_some() {
        return Ok(());
    }
    let Some(t) = crate::eva02::config::timm_tower(name) else {
        return Ok(());
    };
    if v.image_size != t.image_size {
        bail!(
            "{name} is built for {0}x{0} images, the config says image_size {1}",
            t.image_size,
            v.image_size
        );
    }
    v.patch_size = t.patch_size;
    v.width = t.width;
    v.layers = t.layers;
    v.head_width = t.width / t.heads;
    v.mlp_ratio = t.mlp_ratio;
    v.eva = Some(t.design);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_match_the_paper_table() {
        let b32 = ClipConfig::from_name_or_path("ViT-B-32").unwrap();
        assert_eq!(
            (
                b32.embed_dim,
                b32.vision_cfg.width,
                b32.vision_cfg.patch_size
            ),
            (512, 768, 32)
        );
        assert_eq!(
            (b32.text_cfg.width, b32.text_cfg.heads, b32.vision_heads()),
            (512, 8, 12)
        );
        let l14 = ClipConfig::from_name_or_path("vit-l-14").unwrap();
        assert_eq!(
            (l14.embed_dim, l14.vision_cfg.layers, l14.vision_heads()),
            (768, 24, 16)
        );
        assert!(
            ClipConfig::from_name_or_path("ViT-B-32-quickgelu")
                .unwrap()
                .quick_gelu
        );
        assert!(!b32.quick_gelu);
    }

    /// Each shipped EVA02 config is open_clip's JSON plus the fields its timm name
    /// resolves to: dropping them and resolving again gives the same config.
    #[test]
    fn shipped_eva02_configs_are_their_timm_names_resolved() {
        for (name, json) in BUILTIN_CONFIGS
            .iter()
            .filter(|(n, _)| n.starts_with("EVA02"))
        {
            let shipped = ClipConfig::from_json(json).unwrap();
            assert!(shipped.is_eva() && shipped.custom_text, "{name}");
            let mut bare: serde_json::Value = serde_json::from_str(json).unwrap();
            let v = bare["vision_cfg"].as_object_mut().unwrap();
            for k in [
                "eva",
                "patch_size",
                "width",
                "layers",
                "head_width",
                "mlp_ratio",
            ] {
                v.remove(k);
            }
            let resolved = ClipConfig::from_json(&bare.to_string()).unwrap();
            assert_eq!(resolved, shipped, "{name}");
        }
        let e = ClipConfig::from_name_or_path("EVA02-E-14-plus").unwrap();
        let v = &e.vision_cfg;
        assert_eq!((v.width, v.layers, v.width / v.head_width), (1792, 64, 16));
        assert_eq!((v.width as f64 * v.mlp_ratio) as usize, 15360);
        assert!(v.eva.unwrap().post_norm);
        let b = ClipConfig::from_name_or_path("EVA02-B-16").unwrap();
        assert_eq!(
            (b.vision_cfg.width as f64 * b.vision_cfg.mlp_ratio) as usize,
            2048
        );
        // A timm tower realsyn does not build is refused by name.
        let json = r#"{"embed_dim": 8, "vision_cfg": {"image_size": 224, "timm_model_name": "convnext_base"},
                       "text_cfg": {"width": 32, "heads": 2, "layers": 1}}"#;
        let err = ClipConfig::from_json(json).unwrap_err().to_string();
        assert!(
            err.contains("convnext_base") && err.contains("eva02_base_patch16_clip_224"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_options_are_rejected() {
        let json = r#"{"embed_dim": 8, "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 1, "width": 64, "timm_model_name": "x"},
                       "text_cfg": {"width": 32, "heads": 2, "layers": 1}}"#;
        assert!(
            ClipConfig::from_json(json)
                .unwrap_err()
                .to_string()
                .contains("timm")
        );
        let bad = ClipConfig::from_name_or_path("ViT-Q-99")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("ViT-B-32"), "{bad}");
    }
}
