//! GIT's architecture in the field names of Hugging Face's `GitConfig` (and its
//! `vision_config`, a `GitVisionConfig`), read from a snapshot's `config.json` with
//! transformers' defaults for every absent field.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::common::transformer::{Activation, LN_EPS};

/// The image encoder: CLIP's ViT without its projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GitVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
}

impl Default for GitVisionConfig {
    /// transformers' `GitVisionConfig()` = CLIP ViT-B/16 at 224 px (git-base's).
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 16,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

/// The text decoder: a BERT encoder stack (post-LN) run causally over text, with the
/// image tokens as a prefix every text token sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GitConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f64,
    pub position_embedding_type: String,
    /// Video GIT (`git-*-vatex`): frames with temporal embeddings; not implemented.
    pub num_image_with_embedding: Option<usize>,
    pub pad_token_id: u32,
    /// `[CLS]`: the prompt every caption starts from.
    pub bos_token_id: u32,
    /// `[SEP]`: ends a caption.
    pub eos_token_id: u32,
    pub tie_word_embeddings: bool,
    pub vision_config: GitVisionConfig,
}

impl Default for GitConfig {
    /// transformers' `GitConfig()`: the shapes of microsoft/git-base (177M parameters).
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            max_position_embeddings: 1024,
            layer_norm_eps: 1e-12,
            position_embedding_type: "absolute".into(),
            num_image_with_embedding: None,
            pad_token_id: 0,
            bos_token_id: 101,
            eos_token_id: 102,
            tie_word_embeddings: false,
            vision_config: GitVisionConfig::default(),
        }
    }
}

fn activation(name: &str, what: &str) -> Result<Activation> {
    Ok(match name {
        "gelu" => Activation::Gelu,
        "quick_gelu" => Activation::QuickGelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        other => bail!("GIT {what} activation {other:?} is not supported"),
    })
}

impl GitConfig {
    /// A snapshot's `config.json`.
    pub fn from_hf_json(json: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(json).context("not a GIT config.json")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let v = &self.vision_config;
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            bail!(
                "GIT hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if v.num_attention_heads == 0 || !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            bail!(
                "GIT vision hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size,
                v.num_attention_heads
            );
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            bail!(
                "GIT vision image_size {} is not a multiple of patch_size {}",
                v.image_size,
                v.patch_size
            );
        }
        if v.num_channels != 3 {
            bail!(
                "GIT vision num_channels {} (only RGB is supported)",
                v.num_channels
            );
        }
        // The ViT blocks are the model library's shared ones, built with open_clip's eps.
        if (v.layer_norm_eps - LN_EPS).abs() > 1e-12 {
            bail!(
                "GIT vision layer_norm_eps {} (the shared ViT blocks use {LN_EPS}, as every released GIT does)",
                v.layer_norm_eps
            );
        }
        if self.position_embedding_type != "absolute" {
            bail!(
                "GIT position_embedding_type {:?} is not supported (released GIT models use \"absolute\")",
                self.position_embedding_type
            );
        }
        if let Some(n) = self.num_image_with_embedding {
            bail!(
                "this GIT takes {n} video frames (num_image_with_embedding): only image captioners are supported"
            );
        }
        self.activation()?;
        self.vision_activation()?;
        Ok(())
    }

    pub fn activation(&self) -> Result<Activation> {
        activation(&self.hidden_act, "decoder")
    }

    pub fn vision_activation(&self) -> Result<Activation> {
        activation(&self.vision_config.hidden_act, "vision")
    }

    /// Image tokens in the decoder's prefix: the class token + one per patch.
    pub fn image_tokens(&self) -> usize {
        let g = self.vision_config.image_size / self.vision_config.patch_size;
        g * g + 1
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_git_base_and_video_git_is_refused() {
        let cfg = GitConfig::from_hf_json("{}").unwrap();
        assert_eq!(cfg, GitConfig::default());
        assert_eq!(cfg.image_tokens(), 197);
        let video = GitConfig::from_hf_json(r#"{"num_image_with_embedding": 6}"#).unwrap_err();
        assert!(format!("{video:#}").contains("video frames"), "{video:#}");
        let odd = GitConfig::from_hf_json(r#"{"vision_config": {"patch_size": 15}}"#).unwrap_err();
        assert!(
            format!("{odd:#}").contains("multiple of patch_size"),
            "{odd:#}"
        );
    }
}
