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
    let file_len = std::fs::metadata(path)?.len();
    check_declared_sizes(path, file_len)?;
    let mut reader =
        PytorchReader::new(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if reader.keys().iter().any(|k| k.starts_with("state_dict.")) {
        reader = PytorchReader::with_top_level_key(path, "state_dict")
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    // burn-store zero-pads a tensor whose stored bytes fall short of its declared
    // shape, allocating the whole shape first: a small file declaring a huge tensor
    // would take the declared size, and a truncated checkpoint would load as zeros. A tensor's bytes
    // are in the file (torch.save stores them uncompressed), so a declared size
    // past the file's is refused before anything is allocated.
    let mut sd = StateDict::default();
    for (name, snapshot) in reader.into_tensors() {
        let dims = snapshot.shape.as_slice();
        let declared = dims
            .iter()
            .try_fold(snapshot.dtype.size() as u128, |n, &d| {
                n.checked_mul(d as u128)
            });
        if declared.is_none_or(|b| b > file_len as u128) {
            bail!(
                "{}: tensor {name} declares shape {dims:?} of {:?}, more bytes than the file's {file_len}: truncated or corrupt",
                path.display(),
                snapshot.dtype
            );
        }
        let data = snapshot
            .to_data()
            .map_err(|e| anyhow::anyhow!("tensor {name}: {e:?}"))?;
        let host = HostTensor::from_data(data).with_context(|| format!("tensor {name}"))?;
        sd.insert(name, host);
    }
    Ok(sd)
}

/// Sizes a torch file declares may not exceed what the file could hold: burn-store
/// allocates them before reading, so a 2 KB file whose zip directory says 2 GB, or a
/// pickle whose string length says 4 GB, would take that much. Checked here: every
/// zip entry's size, and every length prefix in the pickles (`data.pkl` of a zip,
/// the five leading pickles of a legacy file).
fn check_declared_sizes(path: &Path, file_len: u64) -> Result<()> {
    use std::io::{BufReader, Cursor, Read};
    let corrupt = |what: String| anyhow::anyhow!("{}: {what}", path.display());
    let Ok(mut archive) = zip::ZipArchive::new(BufReader::new(std::fs::File::open(path)?)) else {
        // Legacy serialization: magic number, protocol, system info, the object and
        // the storage keys are pickles, then raw storage bytes.
        let mut r = BufReader::new(std::fs::File::open(path)?);
        return super::pickle_scan::check_lengths(&mut r, file_len, 5).map_err(corrupt);
    };
    // Deflate expands at most about 1032:1 (torch.save stores entries uncompressed).
    const MAX_RATIO: u64 = 1032;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| corrupt(format!("zip entry {i}: {e}")))?;
        let stored = entry.compression() == zip::CompressionMethod::Stored;
        let limit = if stored {
            file_len
        } else {
            entry.compressed_size().saturating_mul(MAX_RATIO)
        };
        if entry.compressed_size() > file_len || entry.size() > limit {
            return Err(corrupt(format!(
                "zip entry {} declares {} bytes ({} compressed) in a {file_len}-byte file: truncated or corrupt",
                entry.name(),
                entry.size(),
                entry.compressed_size()
            )));
        }
        if entry.name().ends_with(".pkl") {
            let mut pickle = Vec::new();
            (&mut entry).take(limit).read_to_end(&mut pickle)?;
            let len = pickle.len() as u64;
            let name = entry.name().to_string();
            super::pickle_scan::check_lengths(&mut Cursor::new(pickle), len, 1)
                .map_err(|e| corrupt(format!("{name}: {e}")))?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../realsyn-fuzz/corpus/pickle");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// Set the sizes the zip directory (and local header) declare for `entry`.
    fn declare_size(zip: &mut [u8], entry: &str, size: u32) {
        let mut found = 0;
        for sig in [[0x50, 0x4b, 0x01, 0x02], [0x50, 0x4b, 0x03, 0x04]] {
            // Central directory: sizes at +20/+24, name length +28, name at +46.
            // Local header: sizes at +18/+22, name length +26, name at +30.
            let (sizes, len_at, name_at) = if sig[2] == 1 {
                (20, 28, 46)
            } else {
                (18, 26, 30)
            };
            let mut i = 0;
            while i + name_at < zip.len() {
                if zip[i..i + 4] == sig {
                    let n = u16::from_le_bytes([zip[i + len_at], zip[i + len_at + 1]]) as usize;
                    if zip.get(i + name_at..i + name_at + n) == Some(entry.as_bytes()) {
                        for at in [i + sizes, i + sizes + 4] {
                            zip[at..at + 4].copy_from_slice(&size.to_le_bytes());
                        }
                        found += 1;
                    }
                }
                i += 1;
            }
        }
        assert_eq!(found, 2, "{entry}");
    }

    #[test]
    fn torch_files_declaring_more_than_they_hold_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.pt");
        std::fs::write(&good, seed("state-dict.pt")).unwrap();
        let sd = read_torch_pickle(&good).unwrap();
        assert_eq!(sd.len(), 2);

        // A storage whose directory entry says 2 GB.
        let mut bytes = seed("state-dict.pt");
        declare_size(&mut bytes, "state-dict/data/0", 0x8000_0018);
        let bad = dir.path().join("bad-size.pt");
        std::fs::write(&bad, &bytes).unwrap();
        let err = read_torch_pickle(&bad).unwrap_err().to_string();
        assert!(
            err.contains("state-dict/data/0 declares 2147483672 bytes"),
            "{err}"
        );

        // A view of 2^40 elements over a 6-element storage (torch's expand).
        let huge = dir.path().join("huge-view.pt");
        std::fs::write(&huge, seed("huge-view.pt")).unwrap();
        let err = read_torch_pickle(&huge).unwrap_err().to_string();
        assert!(
            err.contains("tensor big declares shape [1048576, 1048576]"),
            "{err}"
        );
    }
}
