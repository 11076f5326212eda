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

impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    const SIZE: usize = 8;
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn read_le(b: &[u8]) -> Self {
        i64::from_le_bytes(b.try_into().expect("8 bytes"))
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

/// The header (magic, version, length, dictionary) of an array of `shape`.
fn npy_header<T: NpyElement>(shape: &[usize]) -> Vec<u8> {
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
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Serialise `data` with `shape` as `.npy` bytes.
pub fn to_npy_bytes<T: NpyElement>(data: &[T], shape: &[usize]) -> Result<Vec<u8>> {
    if shape.iter().product::<usize>() != data.len() {
        bail!("shape {shape:?} does not match {} values", data.len());
    }
    let mut out = npy_header::<T>(shape);
    out.reserve(data.len() * T::SIZE);
    for &x in data {
        x.write_le(&mut out);
    }
    Ok(out)
}

/// Write an `.npy` file atomically (temp file + rename).
pub fn write_npy<T: NpyElement>(path: &Path, data: &[T], shape: &[usize]) -> Result<()> {
    crate::fs::write_atomic(path, &to_npy_bytes(data, shape)?)
}

/// Parse an `.npy` header: the shape and where the data starts.
fn parse_header<T: NpyElement>(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{}: not an .npy file", path.display());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
        _ => bail!("{}: truncated header", path.display()),
    };
    let Some(header) = bytes.get(start..start + hlen) else {
        bail!("{}: truncated header", path.display());
    };
    let header = std::str::from_utf8(header)?;
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
    let expected = start + hlen + shape.iter().product::<usize>() * T::SIZE;
    if bytes.len() != expected {
        bail!(
            "{}: {} bytes where shape {shape:?} needs {expected} (truncated or appended to)",
            path.display(),
            bytes.len()
        );
    }
    Ok((shape, start + hlen))
}

/// Read an `.npy` file of element type `T` (as written by numpy or `write_npy`).
pub fn read_npy<T: NpyElement>(path: &Path) -> Result<(Vec<T>, Vec<usize>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (shape, start) = parse_header::<T>(&bytes, path)?;
    let data: Vec<T> = bytes[start..]
        .chunks_exact(T::SIZE)
        .map(T::read_le)
        .collect();
    Ok((data, shape))
}

/// A 2-D `.npy` matrix on disk, memory-mapped: rows are read where they lie, so a
/// store larger than memory is scanned block by block (the clustering and retrieval
/// stages' sentence embeddings: 0.84B x 1024 x 2 bytes at paper scale).
pub struct NpyMatrix {
    map: memmap2::Mmap,
    start: usize,
    rows: usize,
    width: usize,
    half: bool,
}

impl NpyMatrix {
    /// Open a `[rows, width]` matrix of f32 or f16.
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: the stores' files are written once (temp file + rename) and never
        // modified in place; a file truncated under the map would be a user error
        // that the header check above the data cannot see.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("mapping {}", path.display()))?;
        // The element type from the header's first bytes (it is within 128 of them).
        let head = &map[..map.len().min(128)];
        let half = head.windows(4).any(|w| w == b"'<f2");
        let (shape, start) = if half {
            parse_header::<half::f16>(&map, path)?
        } else {
            parse_header::<f32>(&map, path)?
        };
        let [rows, width] = shape[..] else {
            bail!("{}: expected a 2-D matrix, shape {shape:?}", path.display());
        };
        Ok(Self {
            map,
            start,
            rows,
            width,
            half,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows `range` as f32 (f16 files are widened).
    pub fn read_rows(&self, range: std::ops::Range<usize>) -> Vec<f32> {
        assert!(range.end <= self.rows, "rows {range:?} of {}", self.rows);
        let size = if self.half { 2 } else { 4 };
        let a = self.start + range.start * self.width * size;
        let b = self.start + range.end * self.width * size;
        let bytes = &self.map[a..b];
        if self.half {
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()
        } else {
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
    }

    /// Rows `range` as f32, borrowed from the map when the file is f32 (no copy),
    /// widened into a new vector when it is f16.
    pub fn rows_f32(&self, range: std::ops::Range<usize>) -> std::borrow::Cow<'_, [f32]> {
        assert!(range.end <= self.rows, "rows {range:?} of {}", self.rows);
        if self.half || cfg!(target_endian = "big") {
            return std::borrow::Cow::Owned(self.read_rows(range));
        }
        let a = self.start + range.start * self.width * 4;
        let b = self.start + range.end * self.width * 4;
        let bytes = &self.map[a..b];
        // SAFETY: `.npy` headers end on a 64-byte boundary of a page-aligned map, so
        // the data is 4-byte aligned (checked); every bit pattern is a valid f32.
        let (pre, floats, post) = unsafe { bytes.align_to::<f32>() };
        if pre.is_empty() && post.is_empty() {
            std::borrow::Cow::Borrowed(floats)
        } else {
            std::borrow::Cow::Owned(self.read_rows(range))
        }
    }

    /// Append row `i` (as f32) to `out`.
    pub fn push_row(&self, i: usize, out: &mut Vec<f32>) {
        out.extend(self.read_rows(i..i + 1));
    }
}

/// A 1-D i64 `.npy` array, memory-mapped and read in place (ids and byte offsets of
/// paper-scale stores: 0.84B x 8 bytes each, which every retrieval job would
/// otherwise load).
pub struct NpyI64 {
    map: memmap2::Mmap,
    start: usize,
    len: usize,
}

impl NpyI64 {
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: as for `NpyMatrix`: store files are written once and never
        // modified in place.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("mapping {}", path.display()))?;
        let (shape, start) = parse_header::<i64>(&map, path)?;
        let [len] = shape[..] else {
            bail!("{}: expected a 1-D array, shape {shape:?}", path.display());
        };
        let out = Self { map, start, len };
        if cfg!(target_endian = "big") || out.bytes().as_ptr().align_offset(8) != 0 {
            bail!(
                "{}: cannot be read in place on this machine",
                path.display()
            );
        }
        Ok(out)
    }

    fn bytes(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len * 8]
    }

    /// The values, borrowed from the map.
    pub fn as_slice(&self) -> &[i64] {
        // SAFETY: alignment and endianness were checked in `open`; every bit
        // pattern is a valid i64.
        let (pre, values, post) = unsafe { self.bytes().align_to::<i64>() };
        debug_assert!(pre.is_empty() && post.is_empty());
        values
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A 2-D `.npy` file written row by row (its row count known up front), so a matrix
/// larger than memory streams to disk; `finish` checks the count and renames it
/// into place.
pub struct NpyRowWriter<T: NpyElement> {
    w: std::io::BufWriter<tempfile::NamedTempFile>,
    path: std::path::PathBuf,
    rows: usize,
    width: usize,
    written: usize,
    buf: Vec<u8>,
    _t: std::marker::PhantomData<T>,
}

impl<T: NpyElement> NpyRowWriter<T> {
    pub fn create(path: &Path, rows: usize, width: usize) -> Result<Self> {
        use std::io::Write;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("creating a file in {}", dir.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
        w.write_all(&npy_header::<T>(&[rows, width]))?;
        Ok(Self {
            w,
            path: path.to_path_buf(),
            rows,
            width,
            written: 0,
            buf: Vec::new(),
            _t: std::marker::PhantomData,
        })
    }

    /// Append whole rows (`values.len()` a multiple of the width).
    pub fn write_rows(&mut self, values: &[T]) -> Result<()> {
        use std::io::Write;
        if self.width == 0 || values.len() % self.width != 0 {
            bail!(
                "{} values are not rows of width {}",
                values.len(),
                self.width
            );
        }
        self.buf.clear();
        for &v in values {
            v.write_le(&mut self.buf);
        }
        self.w.write_all(&self.buf)?;
        self.written += values.len() / self.width;
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        if self.written != self.rows {
            bail!(
                "{}: {} rows written of {} announced",
                self.path.display(),
                self.written,
                self.rows
            );
        }
        let tmp = self.w.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        #[cfg(unix)]
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        tmp.persist(&self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
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

    #[test]
    fn streamed_matrix_maps_back_in_both_precisions() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let p = dir.path().join("m.npy");
        let mut w = NpyRowWriter::<f32>::create(&p, 4, 3).unwrap();
        w.write_rows(&values[..6]).unwrap();
        w.write_rows(&values[6..]).unwrap();
        w.finish().unwrap();
        assert_eq!(read_npy::<f32>(&p).unwrap(), (values.clone(), vec![4, 3]));
        let m = NpyMatrix::open(&p).unwrap();
        assert_eq!((m.rows(), m.width()), (4, 3));
        assert_eq!(m.read_rows(1..3), values[3..9]);
        let h = dir.path().join("h.npy");
        let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
        write_npy(&h, &halves, &[4, 3]).unwrap();
        assert_eq!(NpyMatrix::open(&h).unwrap().read_rows(2..4), values[6..]);
        let ids = dir.path().join("ids.npy");
        write_npy(&ids, &[5i64, -1, 1 << 40], &[3]).unwrap();
        assert_eq!(NpyI64::open(&ids).unwrap().as_slice(), [5, -1, 1 << 40]);
        assert!(
            NpyI64::open(&p).is_err(),
            "an f32 matrix is not an i64 array"
        );
        // A short write is refused, and nothing appears under the name.
        let q = dir.path().join("short.npy");
        let mut w = NpyRowWriter::<f32>::create(&q, 4, 3).unwrap();
        w.write_rows(&values[..3]).unwrap();
        assert!(w.finish().is_err());
        assert!(!q.exists());
        // A truncated file is named as such.
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&q, &bytes[..bytes.len() - 4]).unwrap();
        assert!(format!("{:#}", NpyMatrix::open(&q).err().unwrap()).contains("truncated"));
    }
}
