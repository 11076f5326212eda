//! NumPy `.npy` files (format version 1.0, little-endian, C order): the exchange
//! format of `realsyn tokenize` / `realsyn embed`, readable with `np.load`.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// An element type that `.npy` can hold.
pub trait NpyElement: Copy {
    const DESCR: &'static str;
    /// Bytes per element.
    const SIZE: usize;
    fn write_le(self, out: &mut Vec<u8>);
    fn read_le(bytes: &[u8]) -> Self;
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    const SIZE: usize = 4;
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn read_le(b: &[u8]) -> Self {
        f32::from_le_bytes(b.try_into().expect("4 bytes"))
    }
}

impl NpyElement for i32 {
    const DESCR: &'static str = "<i4";
    const SIZE: usize = 4;
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn read_le(b: &[u8]) -> Self {
        i32::from_le_bytes(b.try_into().expect("4 bytes"))
    }
}

/// Half precision: embedding stores at paper scale (0.84B x 1024 x 2 bytes).
impl NpyElement for half::f16 {
    const DESCR: &'static str = "<f2";
    const SIZE: usize = 2;
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn read_le(b: &[u8]) -> Self {
        half::f16::from_le_bytes(b.try_into().expect("2 bytes"))
    }
}

/// Serialise `data` with `shape` as `.npy` bytes.
pub fn to_npy_bytes<T: NpyElement>(data: &[T], shape: &[usize]) -> Result<Vec<u8>> {
    if shape.iter().product::<usize>() != data.len() {
        bail!("shape {shape:?} does not match {} values", data.len());
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_str}, }}",
        T::DESCR
    );
    // Pad so that magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * T::SIZE);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &x in data {
        x.write_le(&mut out);
    }
    Ok(out)
}

/// Write an `.npy` file atomically (temp file + rename).
pub fn write_npy<T: NpyElement>(path: &Path, data: &[T], shape: &[usize]) -> Result<()> {
    crate::fs::write_atomic(path, &to_npy_bytes(data, shape)?)
}

/// Read an `.npy` file of element type `T` (as written by numpy or `write_npy`).
pub fn read_npy<T: NpyElement>(path: &Path) -> Result<(Vec<T>, Vec<usize>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{}: not an .npy file", path.display());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen])?;
    if !header.contains(&format!("'descr': '{}'", T::DESCR))
        || header.contains("'fortran_order': True")
    {
        bail!(
            "{}: expected a C-order {} array, header {header:?}",
            path.display(),
            T::DESCR
        );
    }
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or("");
    let shape: Vec<usize> = shape_str
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let data: Vec<T> = bytes[start + hlen..]
        .chunks_exact(T::SIZE)
        .map(T::read_le)
        .collect();
    if data.len() != shape.iter().product::<usize>() {
        bail!("{}: truncated data", path.display());
    }
    Ok((data, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy(&p, &[1i32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(
            read_npy::<i32>(&p).unwrap(),
            (vec![1, 2, 3, 4, 5, 6], vec![2, 3])
        );
        assert!(read_npy::<f32>(&p).is_err(), "dtype is checked");
    }
}
