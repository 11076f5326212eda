//! # realsyn-model
//!
//! The model library, one folder per model, as candle-transformers lays it out:
//!
//! - `clip/`: CLIP (ViT image tower + causal text tower), its open_clip configs, the
//!   CLIP BPE tokenizer, the contrastive loss and its weight formats (open_clip,
//!   Hugging Face, realsyn checkpoints).
//! - `eva02/`: EVA02-CLIP's image tower (timm's `Eva`: SwiGLU, sub-LN, 2-D RoPE,
//!   post-norm for E), a `Clip` image tower chosen by the config, and the EVA-CLIP
//!   release's weight layout.
//! - `git/`: GIT (CLIP ViT image encoder + BERT decoder over image tokens), the
//!   builder's captioner: Hugging Face snapshots, greedy and beam search with a KV
//!   cache, its WordPiece tokenizer.
//! - `gpt2/`: GPT-2 as a causal LM (the builder's perplexity filter), its BPE
//!   tokenizer and Hugging Face weights.
//! - `llama/`: a Llama-family decoder (LLaMA 3, SmolLM2) for the builder's LLM merge,
//!   loaded from GGUF or a Hugging Face snapshot, its tokenizer and chat template read
//!   from the GGUF metadata, batched generation with a KV cache.
//! - `common/`: what models are built from: the pre-LN transformer block, host data
//!   <-> tensors, the state dict, the one parameter walk that loads and exports
//!   weights, and weight files.
//! - `encoder`: the `DualEncoder` trait every consumer of an image-text model takes
//!   (evaluation, the trainer's zero-shot hook, the builder's encoders).
//! - `zero_shot`: the zero-shot classifier of any dual encoder (prompt ensembles).
//! - `backend`: the Burn backends realsyn is built with.
//!
//! Generic over the Burn backend. Must not depend on training,
//! data loading or any realsyn crate but `realsyn-io`, as open_clip keeps its model
//! library apart from its training script; the factory that ties a model to its
//! transforms lives in `realsyn-runtime`.

pub mod backend;
pub mod clip;
pub mod common;
pub mod encoder;
pub mod eva02;
pub mod git;
pub mod gpt2;
pub mod llama;
pub mod zero_shot;

pub use clip::config::ClipConfig;
pub use clip::tokenizer::ClipTokenizer;
pub use clip::{Clip, ClipOutput, INIT_LOGIT_SCALE, l2_normalize};
pub use encoder::DualEncoder;
pub use gpt2::tokenizer::Gpt2Tokenizer;
pub use gpt2::{Gpt2, Gpt2Config, Gpt2Perplexity};
