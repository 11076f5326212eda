//! Image semantic augmented generation (paper §3.2, App. A.2): each image gets a
//! short caption (`caption`), open-set tags (`tags`), and an LLM (`llm`: the embedded
//! engine or an OpenAI-compatible server, `openai`) merges its top retrieved text
//! with them into a synthetic text, using the paper's prompt (`prompt`). Finished
//! work goes to an append-only `journal` so a killed run never redoes a request.
//! The stage itself is `stage` (`generate`).

pub mod caption;
pub mod journal;
pub mod llm;
pub mod openai;
pub mod prompt;
pub mod stage;
pub mod tags;
