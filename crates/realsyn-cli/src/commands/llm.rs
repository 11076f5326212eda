//! `realsyn llm`: the embedded LLM (realsyn's Llama in Burn over a GGUF file) as a
//! service; the server is `realsyn_runtime::llm_server`.

use std::path::PathBuf;

use anyhow::Result;
use realsyn_runtime::llm_server::{ServeOptions, serve};

/// The embedded LLM (default: SmolLM2-135M-Instruct Q4_1 from scripts/setup-system.sh).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LlmCommand,
}

#[derive(clap::Subcommand)]
enum LlmCommand {
    /// Serve a GGUF model (llama architecture) over an OpenAI-compatible API:
    /// POST /v1/chat/completions (messages, max_tokens, temperature, top_p, seed,
    /// stop; n = 1), GET /v1/models, GET /health. Requests arriving together are
    /// generated as one batch. Use it as `realsyn build ... --llm http://ADDR/v1`.
    Serve {
        /// The GGUF file; default: the embedded SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: String,
        /// Requests generated together at most.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// cpu, or cuda[:N] in a --features cuda build.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        LlmCommand::Serve {
            model,
            addr,
            batch,
            device,
        } => {
            let gguf = model.unwrap_or_else(realsyn_runtime::llm::default_gguf);
            if !gguf.exists() {
                anyhow::bail!(
                    "{} is missing: run scripts/setup-system.sh or pass --model FILE.gguf",
                    gguf.display()
                );
            }
            serve(
                &device,
                &gguf,
                ServeOptions {
                    addr,
                    batch,
                    max_requests: None,
                },
            )
        }
    }
}
