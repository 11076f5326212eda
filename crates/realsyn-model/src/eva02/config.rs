//! The EVA02 image tower's design, and the timm names open_clip's EVA02 configs use,
//! resolved into it.
//!
//! open_clip's `EVA02-*.json` say only `"timm_model_name": "eva02_base_patch16_clip_224"`;
//! timm's `eva.py` registers what that name means (`Eva(...)` keyword arguments). The
//! table below copies those registrations, field by field:
//!
//! | realsyn field | timm `Eva` argument |
//! |---|---|
//! | `patch_size`, `width`, `layers` | `patch_size`, `embed_dim`, `depth` |
//! | `head_width` | `embed_dim / num_heads` |
//! | `mlp_ratio` | `mlp_ratio` (hidden width = `int(width * mlp_ratio)`, as timm truncates) |
//! | `eva.qkv_fused` | `qkv_fused` (one `qkv` matrix with `q_bias`/`v_bias`; else `q_proj`, `k_proj`, `v_proj`, no k bias either way) |
//! | `eva.swiglu`, `eva.scale_mlp` | `swiglu_mlp`, `scale_mlp` (SwiGLU `fc1_g`/`fc1_x`/`fc2`, a LayerNorm on the hidden units) |
//! | `eva.sub_ln` | `scale_attn_inner` (a LayerNorm on the attention output before `proj`) |
//! | `eva.post_norm` | `use_post_norm` (`x + norm(f(x))` blocks, EVA02-E) |
//! | `eva.rope_ref_grid` | `use_rot_pos_emb` + `ref_feat_shape` (2-D RoPE on the patch tokens) |
//!
//! Fixed for every EVA02-CLIP tower, so not fields: a class token and a learned absolute
//! position embedding (`class_token`, `use_abs_pos_emb`), a patch-embedding conv with
//! bias, timm's LayerNorm (eps 1e-6), the final `norm`, class-token pooling
//! (`global_pool="token"`) and `head`, a Linear to `embed_dim` with bias (open_clip's
//! `TimmModel` with `timm_proj: null` passes `num_classes=embed_dim`).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// How an EVA02 tower differs from open_clip's ViT (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaDesign {
    pub qkv_fused: bool,
    pub swiglu: bool,
    pub scale_mlp: bool,
    pub sub_ln: bool,
    pub post_norm: bool,
    /// RoPE with positions rescaled onto this square reference grid; `None`: no RoPE.
    pub rope_ref_grid: Option<usize>,
}

/// EVA02-B/L (`eva02_{base,large}_patch*_clip_*`): SwiGLU with its LayerNorm, sub-LN in
/// attention, separate q/k/v, RoPE with a 16x16 reference grid, pre-norm blocks.
const EVA02_BL: EvaDesign = EvaDesign {
    qkv_fused: false,
    swiglu: true,
    scale_mlp: true,
    sub_ln: true,
    post_norm: false,
    rope_ref_grid: Some(16),
};

/// EVA02-E (`eva02_enormous_patch14_clip_224`): post-norm blocks of the plain ViT kind
/// (fused qkv, GELU MLP), no RoPE.
const EVA02_E: EvaDesign = EvaDesign {
    qkv_fused: true,
    swiglu: false,
    scale_mlp: false,
    sub_ln: false,
    post_norm: true,
    rope_ref_grid: None,
};

pub struct TimmTower {
    pub name: &'static str,
    pub image_size: usize,
    pub patch_size: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_ratio: f64,
    pub design: EvaDesign,
}

/// timm 1.0's registrations (`timm/models/eva.py`), the EVA02-CLIP ones.
const TIMM_TOWERS: &[TimmTower] = &[
    TimmTower {
        name: "eva02_base_patch16_clip_224",
        image_size: 224,
        patch_size: 16,
        width: 768,
        layers: 12,
        heads: 12,
        mlp_ratio: 4.0 * 2.0 / 3.0,
        design: EVA02_BL,
    },
    TimmTower {
        name: "eva02_large_patch14_clip_224",
        image_size: 224,
        patch_size: 14,
        width: 1024,
        layers: 24,
        heads: 16,
        mlp_ratio: 4.0 * 2.0 / 3.0,
        design: EVA02_BL,
    },
    TimmTower {
        name: "eva02_large_patch14_clip_336",
        image_size: 336,
        patch_size: 14,
        width: 1024,
        layers: 24,
        heads: 16,
        mlp_ratio: 4.0 * 2.0 / 3.0,
        design: EVA02_BL,
    },
    TimmTower {
        name: "eva02_enormous_patch14_clip_224",
        image_size: 224,
        patch_size: 14,
        width: 1792,
        layers: 64,
        heads: 16,
        mlp_ratio: 15360.0 / 1792.0,
        design: EVA02_E,
    },
];

/// The timm tower registered under `name` (timm's `eva02_*_clip_*` models).
pub fn timm_tower(name: &str) -> Option<&'static TimmTower> {
    TIMM_TOWERS.iter().find(|t| t.name == name)
}

/// The timm names realsyn resolves.
pub fn known_timm_towers() -> impl Iterator<Item = &'static str> {
    TIMM_TOWERS.iter().map(|t| t.name)
}

impl EvaDesign {
    /// Designs this implementation builds (every shipped config is one of them).
    pub fn validate(&self) -> Result<()> {
        if self.swiglu != self.scale_mlp {
            bail!(
                "EVA02 MLP: SwiGLU is supported with its hidden LayerNorm (swiglu = scale_mlp = true, EVA02-B/L) and the plain GELU MLP without it (both false, EVA02-E); got swiglu {}, scale_mlp {}",
                self.swiglu,
                self.scale_mlp
            );
        }
        if self.rope_ref_grid == Some(0) {
            bail!("EVA02 rope_ref_grid must be at least 1 (or null for no RoPE)");
        }
        Ok(())
    }
}
