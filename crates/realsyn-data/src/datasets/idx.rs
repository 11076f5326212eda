//! The IDX format of (Fashion-)MNIST: big-endian magic (`0x0000 type ndim`), the
//! dimensions as u32s, then the data. Files may be gzipped.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt gzip", path.display()))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        bail!("{}: not an unsigned-byte IDX file", path.display());
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        bail!("{}: truncated IDX header", path.display());
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let n: usize = dims.iter().product();
    if bytes.len() != header + n {
        bail!(
            "{}: {} data bytes, dims {dims:?} need {n}",
            path.display(),
            bytes.len() - header
        );
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}
