//! CLIP (Radford et al. 2021) as open_clip builds it: a ViT image tower and a causal
//! text tower (`vision`, `text`) on the shared pre-LN blocks, the contrastive outputs
//! and loss (`loss`), open_clip's model configs (`config`), the CLIP BPE tokenizer
//! (`tokenizer`) and weight formats (`weights`: open_clip, Hugging Face, realsyn).
//!
//! As in open_clip, the image tower is chosen by the config: open_clip's ViT, or
//! EVA02's (`crate::eva02`, open_clip's timm tower) for the EVA02-CLIP configs.

pub mod config;
pub mod loss;
pub mod text;
pub mod tokenizer;
pub mod vision;
pub mod weights;

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::common::stages::TowerStages;
use crate::common::transformer::Activation;
use crate::eva02::EvaVisionTower;
use config::ClipConfig;
use text::TextTransformer;
use vision::VisionTransformer;

/// The image tower a config asks for (open_clip's `_build_vision_tower`).
#[derive(Module, Debug)]
pub enum ImageTower<B: Backend> {
    /// open_clip's `VisionTransformer`.
    Vit(VisionTransformer<B>),
    /// timm's `Eva` through open_clip's `TimmModel` (EVA02-CLIP).
    Eva(EvaVisionTower<B>),
}

impl<B: Backend> ImageTower<B> {
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            ImageTower::Vit(t) => t.forward(images),
            ImageTower::Eva(t) => t.forward(images),
        }
    }

    /// The forward pass cut at the blocks (activation checkpointing).
    pub fn stages(&self, images: Tensor<B, 4>) -> TowerStages<'_, B> {
        match self {
            ImageTower::Vit(t) => t.stages(images),
            ImageTower::Eva(t) => t.stages(images),
        }
    }
}

/// ln(1 / 0.07): CLIP's initial temperature.
pub const INIT_LOGIT_SCALE: f64 = 2.659_260_036_932_778_3;

#[derive(Module, Debug)]
pub struct Clip<B: Backend> {
    pub visual: ImageTower<B>,
    pub text: TextTransformer<B>,
    /// Learnable log temperature, shape [1] (a 0-d tensor in open_clip).
    pub logit_scale: Param<Tensor<B, 1>>,
    pub config: ClipConfig,
}

impl<B: Backend> Clip<B> {
    /// A randomly initialised model (open_clip's initialisation scheme).
    pub fn new(config: &ClipConfig, device: &B::Device) -> Self {
        let act = if config.quick_gelu {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        };
        Self {
            visual: match &config.vision_cfg.eva {
                Some(design) => ImageTower::Eva(EvaVisionTower::new(config, design, device)),
                None => ImageTower::Vit(VisionTransformer::new(config, act, device)),
            },
            text: TextTransformer::new(config, act, device),
            logit_scale: Param::from_tensor(Tensor::from_floats([INIT_LOGIT_SCALE as f32], device)),
            config: config.clone(),
        }
    }

    /// Image embeddings, unnormalised (open_clip's `encode_image`).
    pub fn encode_image(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.visual.forward(images)
    }

    /// Text embeddings, unnormalised (open_clip's `encode_text`).
    pub fn encode_text(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        self.text.forward(tokens)
    }

    /// open_clip's `CLIP.forward`: normalised image and text features and exp(logit_scale).
    pub fn forward(&self, images: Tensor<B, 4>, tokens: Tensor<B, 2, Int>) -> ClipOutput<B> {
        ClipOutput {
            image_features: l2_normalize(self.encode_image(images)),
            text_features: l2_normalize(self.encode_text(tokens)),
            logit_scale: self.logit_scale.val().exp(),
        }
    }
}

pub struct ClipOutput<B: Backend> {
    pub image_features: Tensor<B, 2>,
    pub text_features: Tensor<B, 2>,
    /// exp(logit_scale), shape [1].
    pub logit_scale: Tensor<B, 1>,
}

impl<B: Backend> ClipOutput<B> {
    /// [n_images, n_texts] = scale * image_features @ text_features^T.
    pub fn logits_per_image(&self) -> Tensor<B, 2> {
        self.image_features
            .clone()
            .matmul(self.text_features.clone().transpose())
            .mul(self.logit_scale.clone().unsqueeze_dim(0))
    }
}

/// `F.normalize(x, dim=-1)`: x / max(||x||, 1e-12).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
