//! Language models: GPT-2 perplexity (peer: `benches/perplexity.sh`), the embedded
//! LLM (`benches/llm.sh`) and the GIT captioner (`benches/git.sh`), each beside
//! transformers.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_runtime::{BackendJob, dispatch};

#[derive(clap::Args, Clone)]
pub struct Perplexity {
    /// A Hugging Face GPT-2 snapshot.
    #[arg(long)]
    gpt2: PathBuf,
    /// One sentence per line.
    #[arg(long)]
    text: PathBuf,
    /// Padded tokens per forward pass.
    #[arg(long, default_value_t = 8192)]
    batch_tokens: usize,
    /// Passes over the file (the median is reported).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Write each line's perplexity here (one per line, `null` when the line has no
    /// tokens), to compare with the peer's.
    #[arg(long)]
    output: Option<PathBuf>,
    /// cpu, or cuda[:N] in a --features cuda build.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
pub struct Llm {
    /// A GGUF file (llama architecture).
    #[arg(long)]
    weights: PathBuf,
    /// A prompts.json of tests/fixtures/llama (its prompts' token ids).
    #[arg(long)]
    text: PathBuf,
    /// Prompts (the first N of the file).
    #[arg(long, default_value_t = 4)]
    n: usize,
    /// Tokens generated per prompt (end-of-sequence ignored, as the peer's
    /// min_new_tokens).
    #[arg(long, default_value_t = 40)]
    new_tokens: usize,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
pub struct Caption {
    /// A GIT Hugging Face snapshot folder (config.json, model.safetensors, tokenizer).
    #[arg(long)]
    weights: PathBuf,
    /// A folder of images.
    #[arg(long)]
    images: PathBuf,
    /// Images captioned (the first N).
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// Most tokens per caption.
    #[arg(long, default_value_t = 40)]
    new_tokens: usize,
    /// Beams of the beam search (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn llm(a: &Llm) -> Result<()> {
    let report = realsyn_runtime::llm::bench_generation(
        &a.device,
        &a.weights,
        &a.text,
        a.n,
        a.new_tokens,
        a.batch_size,
    )?;
    println!("{report}");
    Ok(())
}

pub fn caption(a: &Caption) -> Result<()> {
    let report = realsyn_runtime::llm::bench_captions(
        &a.device,
        &a.weights,
        &a.images,
        a.n,
        a.new_tokens,
        a.beams,
        a.batch_size,
    )?;
    println!("{report}");
    Ok(())
}

pub fn perplexity(a: Perplexity) -> Result<()> {
    let report = dispatch(&a.device.clone(), PerplexityBench(a))?;
    println!("{report}");
    Ok(())
}

/// GPT-2 perplexity throughput: load once, then score the whole file `--iters` times
/// (the median run is reported).
struct PerplexityBench(Perplexity);

impl BackendJob for PerplexityBench {
    type Output = serde_json::Value;

    fn run<B: Backend>(self, device: B::Device) -> Result<serde_json::Value> {
        let a = self.0;
        let (weights, text) = (&a.gpt2, &a.text);
        let lines: Vec<String> = std::fs::read_to_string(text)?
            .lines()
            .map(str::to_string)
            .collect();
        let mut scorer = realsyn_model::Gpt2Perplexity::<B>::load(weights, None, &device)?;
        scorer.batch_tokens = a.batch_tokens.max(1);
        let tokens: usize = lines.iter().map(|l| scorer.ids(l).len()).sum();
        let mut seconds = Vec::new();
        let mut ppl = Vec::new();
        for _ in 0..a.iters.max(1) {
            let start = Instant::now();
            ppl = scorer.perplexities(&lines)?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        if let Some(out) = &a.output {
            let text: String = ppl
                .iter()
                .map(|p| p.map_or("null".to_string(), |p| format!("{p}")) + "\n")
                .collect();
            realsyn_io::fs::write_atomic(out, text.as_bytes())?;
        }
        let median = super::median(seconds);
        Ok(serde_json::json!({
            "impl": "realsyn-burn", "backend": a.device, "mode": "perplexity",
            "layers": scorer.config.n_layer, "width": scorer.config.n_embd,
            "sentences": lines.len(), "tokens": tokens, "median_s": median,
            "sentences_per_s": lines.len() as f64 / median, "tokens_per_s": tokens as f64 / median,
            "threads": rayon::current_num_threads(),
        }))
    }
}
