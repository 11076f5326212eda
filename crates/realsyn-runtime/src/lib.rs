//! # realsyn-runtime
//!
//! What sits between the libraries and the command line:
//!
//! - `device`: `--device cpu|ndarray|cuda[:N]|wgpu` (or a list for data parallelism) picks
//!   a Burn backend and runs a backend-generic job on it.
//! - `factory`: a model from a name or weights file with its eval and train
//!   transforms and its tokenizer, as open_clip's `create_model_and_transforms` +
//!   `get_tokenizer` (`create_model_and_transforms`).
//! - `build_models`: the models a builder run needs (image and text encoders, GPT-2),
//!   loaded once on the chosen device and handed to the builder through its traits.
//! - `vector_search`: the builder's k-means and centroid-ranking GEMMs on a Burn
//!   device (`--device cuda`); on the CPU the builder's own kernel runs them.
//! - `host_profile`: a sampling profiler of the process's host threads (tables by
//!   thread, crate and function, folded stacks, a flame graph), for `realsyn bench
//!   --profile-host`: where a step's CPU time goes, and the step thread's wall time
//!   waits included, on machines without perf.
//! - `llm`: the generation's LLM (realsyn's Llama over GGUF, or an OpenAI-compatible
//!   server) and captioner, as the builder's `ChatLlm` / `Captioner`; `llm_server`
//!   serves the embedded LLM over an OpenAI-compatible HTTP API (`realsyn llm serve`).
//!
//! Batching is `realsyn_io::encode_in_batches` around the model library's
//! `embed_pixels` / `embed_texts`: every embedding path (embed, eval, the builder's
//! stages) runs that one loop.
//!
//! Depends on the libraries (io, model, data, builder); must not depend on the
//! trainer, the evaluator or the CLI, and parses no arguments.

pub mod build_models;
pub mod device;
pub mod factory;
pub mod host_profile;
pub mod llm;
pub mod llm_server;
pub mod static_server;
pub mod vector_search;

pub use device::{BackendJob, MultiDeviceJob, dispatch, dispatch_devices};
pub use factory::{ModelAndTransforms, create_model_and_transforms};
