//! # realsyn-model
//!
//! The model library: CLIP (ViT image tower + causal text tower) in Burn, generic over
//! the backend; GPT-2 (the builder's perplexity filter); the CLIP and GPT-2 BPE
//! tokenizers; model configs in open_clip's JSON format; and
//! weight interop with open_clip and Hugging Face. No training or data code lives
//! here (that is `realsyn-train` / `realsyn-data`), as open_clip keeps its model
//! library apart from its training script.
//!
//! One file per part: `transformer` (the shared residual block), `vision`, `text`,
//! `clip` (the two towers + contrastive outputs), `gpt2`, `config`, `tokenizer`, `weights`.

pub mod backend;
pub mod batch;
pub mod clip;
pub mod config;
pub mod gpt2;
pub mod loss;
pub mod text;
pub mod tokenizer;
pub mod transformer;
pub mod vision;
pub mod weights;

pub use clip::{Clip, ClipOutput, INIT_LOGIT_SCALE, l2_normalize};
pub use config::ClipConfig;
pub use gpt2::{Gpt2, Gpt2Config, Gpt2Perplexity};
pub use tokenizer::{ClipTokenizer, Gpt2Tokenizer};
