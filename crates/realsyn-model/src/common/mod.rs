//! What every model of the library is built from: the pre-LN transformer block
//! (`transformer`), a tower's forward pass cut at its blocks (`stages`), the rotation
//! of a rotary position embedding (`rotary`), host data
//! <-> tensors (`batch`), the framework-neutral state dict (`state_dict`), the one
//! parameter walk that loads and exports weights (`walk`), and weight files (`files`:
//! safetensors, torch pickles; `gguf`: llama.cpp's quantised files).

pub mod batch;
pub mod files;
pub mod gguf;
pub mod pickle_scan;
pub mod rotary;
pub mod stages;
pub mod state_dict;
pub mod transformer;
pub mod walk;
