//! Weight files, model-agnostic: safetensors (read any float dtype as f32; write f32
//! with a deterministic header) and torch pickles (through burn-store's reader).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::state_dict::{HostTensor, StateDict};
use realsyn_io::fs::write_atomic;

/// A safetensors file (f32, f64, f16 or bf16 tensors, read as f32) and its header
/// metadata.
///
/// The file is memory-mapped and converted tensor by tensor, so the only copy held in
/// memory is the f32 state dict (the mapped pages are the page cache's, not ours);
/// loading then moves each tensor out of the state dict into the model, so a model
/// as large as EVA02-E-14-plus (5.0B parameters, a 10 GB f16 file) peaks near one f32
/// copy of itself, not three.
pub fn read_safetensors(path: &Path) -> Result<(StateDict, HashMap<String, String>)> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    // SAFETY: the mapping is read only and dropped before returning; a file truncated
    // underneath it is the same hazard every safetensors reader (Python's included) takes.
    let bytes = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("memory-mapping {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)?;
    let mut sd = StateDict::default();
    for (name, view) in st.tensors() {
        let data = to_f32(view.dtype(), view.data()).with_context(|| format!("tensor {name}"))?;
        sd.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    Ok((sd, meta.metadata().clone().unwrap_or_default()))
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => bail!("unsupported dtype {other:?} (expected a float type)"),
    })
}

/// torch pickles (`torch.save(model.state_dict())`, or an open_clip training
/// checkpoint whose weights sit under `state_dict`).
pub fn read_torch_pickle(path: &Path) -> Result<StateDict> {
    use burn_store::pytorch::PytorchReader;
    let mut reader =
        PytorchReader::new(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if reader.keys().iter().any(|k| k.starts_with("state_dict.")) {
        reader = PytorchReader::with_top_level_key(path, "state_dict")
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let mut sd = StateDict::default();
    for (name, snapshot) in reader.into_tensors() {
        let data = snapshot
            .to_data()
            .map_err(|e| anyhow::anyhow!("tensor {name}: {e:?}"))?;
        let host = HostTensor::from_data(data).with_context(|| format!("tensor {name}"))?;
        sd.insert(name, host);
    }
    Ok(sd)
}

/// Write a state dict as safetensors, atomically (temp file + rename).
pub fn write_safetensors(
    path: &Path,
    sd: &StateDict,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = sd
        .tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, b, s)| Ok((k.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_>>()?;
    let buffer = safetensors::serialize(views, Some(metadata))?;
    write_atomic(path, &sorted_header(buffer)?)
}

/// safetensors writes its `__metadata__` map in hash order, so two saves of the same
/// tensors differ in bytes. Re-emit the JSON header with sorted keys (data offsets
/// are relative to the data section, so they are unchanged), padded with spaces to
/// 8-byte alignment as safetensors pads it: identical inputs give identical files.
fn sorted_header(buffer: Vec<u8>) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(buffer[..8].try_into()?) as usize;
    let mut header: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&buffer[8..8 + n])?;
    if let Some(meta) = header.get_mut("__metadata__") {
        let sorted: std::collections::BTreeMap<String, serde_json::Value> =
            serde_json::from_value(meta.take())?;
        *meta = serde_json::to_value(sorted)?;
    }
    let mut json = serde_json::to_vec(&header)?;
    while (8 + json.len()) % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + buffer.len() - 8 - n);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&buffer[8 + n..]);
    Ok(out)
}
