//! Llama weights in Hugging Face `LlamaForCausalLM` names, from a GGUF file or a
//! Hugging Face snapshot (`config.json` + `model*.safetensors`).
//!
//! llama.cpp's converter permutes the rows of `q_proj` / `k_proj` so that ggml's
//! interleaved RoPE matches Hugging Face's rotate-half RoPE; reading GGUF undoes that
//! permutation (`unpermute`, `transformers`' `reverse_permute_weights`), so both
//! sources run the same model.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;

use super::{Llama, LlamaConfig};
use crate::common::files::read_safetensors;
use crate::common::gguf::Gguf;
use crate::common::state_dict::{HostTensor, StateDict};
use crate::common::walk::{Layout, ParamVisitor, load_strict, visit_linear};

/// Every parameter once, with its Hugging Face key.
pub fn visit_llama_params<B: Backend, V: ParamVisitor<B>>(
    m: &mut Llama<B>,
    v: &mut V,
) -> Result<()> {
    v.visit(
        "model.embed_tokens.weight",
        Layout::Same,
        &mut m.embed_tokens.weight,
    )?;
    for (i, l) in m.layers.iter_mut().enumerate() {
        let p = format!("model.layers.{i}");
        v.visit(
            &format!("{p}.input_layernorm.weight"),
            Layout::Same,
            &mut l.input_layernorm.gamma,
        )?;
        let a = &mut l.self_attn;
        visit_linear(v, &format!("{p}.self_attn.q_proj"), &mut a.q_proj)?;
        visit_linear(v, &format!("{p}.self_attn.k_proj"), &mut a.k_proj)?;
        visit_linear(v, &format!("{p}.self_attn.v_proj"), &mut a.v_proj)?;
        visit_linear(v, &format!("{p}.self_attn.o_proj"), &mut a.o_proj)?;
        v.visit(
            &format!("{p}.post_attention_layernorm.weight"),
            Layout::Same,
            &mut l.post_attention_layernorm.gamma,
        )?;
        visit_linear(v, &format!("{p}.mlp.gate_proj"), &mut l.mlp.gate_proj)?;
        visit_linear(v, &format!("{p}.mlp.up_proj"), &mut l.mlp.up_proj)?;
        visit_linear(v, &format!("{p}.mlp.down_proj"), &mut l.mlp.down_proj)?;
    }
    v.visit("model.norm.weight", Layout::Same, &mut m.norm.gamma)?;
    if let Some(head) = m.lm_head.as_mut() {
        visit_linear(v, "lm_head", head)?;
    }
    Ok(())
}

/// The architecture from GGUF metadata (`{arch}.block_count`, ...).
pub fn config_from_gguf(g: &Gguf) -> Result<LlamaConfig> {
    let arch = g.str("general.architecture")?;
    if arch != "llama" {
        bail!(
            "GGUF architecture {arch:?}: realsyn's embedded LLM runs llama-architecture files (LLaMA, SmolLM2, Mistral)"
        );
    }
    let key = |k: &str| format!("llama.{k}");
    let hidden = g.u64(&key("embedding_length"))? as usize;
    let heads = g.u64(&key("attention.head_count"))? as usize;
    let vocab = match g.metadata.get("llama.vocab_size").and_then(|v| v.as_u64()) {
        Some(v) => v as usize,
        None => *g
            .tensors
            .get("token_embd.weight")
            .and_then(|t| t.dims.get(1))
            .context("GGUF has neither llama.vocab_size nor a 2-d token_embd.weight")?,
    };
    if let Some(kind) = g
        .metadata
        .get("llama.rope.scaling.type")
        .and_then(|v| v.as_str())
        && kind != "none"
    {
        bail!("GGUF RoPE scaling {kind:?} is not supported yet");
    }
    let cfg = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: g.u64(&key("feed_forward_length"))? as usize,
        num_hidden_layers: g.u64(&key("block_count"))? as usize,
        num_attention_heads: heads,
        num_key_value_heads: g
            .metadata
            .get(&key("attention.head_count_kv"))
            .and_then(|v| v.as_u64())
            .map_or(heads, |v| v as usize),
        rms_norm_eps: g.f64(&key("attention.layer_norm_rms_epsilon"))?,
        rope_theta: g
            .metadata
            .get(&key("rope.freq_base"))
            .and_then(|v| v.as_f64())
            .unwrap_or(10000.0),
        max_position_embeddings: g.u64(&key("context_length"))? as usize,
        tie_word_embeddings: !g.tensors.contains_key("output.weight"),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The weights must hold exactly the parameters the config describes: checked before
/// the model of that shape is allocated, so a header declaring a huge model next to
/// small tensors is an error, not an allocation of its size (1 KB of GGUF metadata
/// could otherwise ask for terabytes).
fn check_parameter_count(cfg: &LlamaConfig, sd: &StateDict) -> Result<()> {
    let held: u128 = sd.tensors.values().map(|t| t.data.len() as u128).sum();
    let wanted = cfg.parameter_count();
    if held != wanted {
        bail!(
            "the weights hold {held} parameters but their config describes a model of {wanted} \
             ({} layers, hidden {}, vocabulary {}): the file is inconsistent or truncated",
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.vocab_size
        );
    }
    Ok(())
}

/// Undo llama.cpp's q/k row permutation.
fn unpermute(t: HostTensor, heads: usize) -> Result<HostTensor> {
    let [rows, cols] = t.shape[..] else {
        bail!("q/k weight is not 2-d: {:?}", t.shape)
    };
    let half = rows / heads / 2;
    let mut out = vec![0.0f32; t.data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                // llama.cpp views Hugging Face rows as [heads, 2, d/2] and swaps the
                // last two axes: ggml row (h, i, j) is Hugging Face row (h, j, i).
                let src = (h * half * 2 + i * 2 + j) * cols;
                let dst = (h * 2 * half + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&t.data[src..src + cols]);
            }
        }
    }
    Ok(HostTensor::new(t.shape, out))
}

/// GGUF tensors renamed to Hugging Face keys, q/k unpermuted, f32.
pub fn state_dict_from_gguf(g: &Gguf, cfg: &LlamaConfig) -> Result<StateDict> {
    let mut sd = StateDict::default();
    for name in g.tensors.keys() {
        let hf = match name.as_str() {
            "token_embd.weight" => "model.embed_tokens.weight".to_string(),
            "output_norm.weight" => "model.norm.weight".to_string(),
            "output.weight" => "lm_head.weight".to_string(),
            // RoPE frequency tables some converters store; recomputed here.
            n if n.starts_with("rope_") => continue,
            n => {
                let rest = n
                    .strip_prefix("blk.")
                    .with_context(|| format!("unexpected GGUF tensor {n}"))?;
                let (layer, part) = rest.split_once('.').context("bad block tensor name")?;
                let part = match part {
                    "attn_norm.weight" => "input_layernorm.weight",
                    "ffn_norm.weight" => "post_attention_layernorm.weight",
                    "attn_q.weight" => "self_attn.q_proj.weight",
                    "attn_k.weight" => "self_attn.k_proj.weight",
                    "attn_v.weight" => "self_attn.v_proj.weight",
                    "attn_output.weight" => "self_attn.o_proj.weight",
                    "ffn_gate.weight" => "mlp.gate_proj.weight",
                    "ffn_up.weight" => "mlp.up_proj.weight",
                    "ffn_down.weight" => "mlp.down_proj.weight",
                    other => bail!("unexpected GGUF tensor blk.{layer}.{other}"),
                };
                format!("model.layers.{layer}.{part}")
            }
        };
        let mut t = g.tensor(name)?;
        if name.ends_with("attn_q.weight") {
            t = unpermute(t, cfg.num_attention_heads)?;
        } else if name.ends_with("attn_k.weight") {
            t = unpermute(t, cfg.num_key_value_heads)?;
        }
        sd.insert(hf, t);
    }
    Ok(sd)
}

impl<B: Backend> Llama<B> {
    /// Load a GGUF file.
    pub fn from_gguf(g: &Gguf, device: &B::Device) -> Result<(Self, LlamaConfig)> {
        let cfg = config_from_gguf(g)?;
        let sd = state_dict_from_gguf(g, &cfg)?;
        check_parameter_count(&cfg, &sd)?;
        let mut model = Llama::new(&cfg, device)?;
        load_strict(sd, device, |l| visit_llama_params(&mut model, l))?;
        Ok((model, cfg))
    }

    /// Load a Hugging Face snapshot directory (`config.json` + one or more
    /// `*.safetensors`).
    pub fn from_hf_dir(dir: &Path, device: &B::Device) -> Result<(Self, LlamaConfig)> {
        let cfg = LlamaConfig::from_hf_json(
            &std::fs::read_to_string(dir.join("config.json"))
                .with_context(|| format!("{}: no config.json", dir.display()))?,
        )?;
        let mut sd = StateDict::default();
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{}: no *.safetensors weights", dir.display());
        }
        for f in files {
            let (part, _) = read_safetensors(&f)?;
            sd.tensors.extend(part.tensors);
        }
        // Snapshots of tied models may still carry the head: drop it when tied.
        if cfg.tie_word_embeddings {
            sd.tensors.remove("lm_head.weight");
        }
        check_parameter_count(&cfg, &sd)
            .with_context(|| format!("loading Llama weights from {}", dir.display()))?;
        let mut model = Llama::new(&cfg, device)?;
        load_strict(sd, device, |l| visit_llama_params(&mut model, l))
            .with_context(|| format!("loading Llama weights from {}", dir.display()))?;
        Ok((model, cfg))
    }
}
