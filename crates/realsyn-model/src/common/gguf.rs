//! GGUF, llama.cpp's weight file: a header of typed metadata (architecture,
//! hyper-parameters, the tokenizer's vocabulary and merges, the chat template), a
//! tensor index, then the tensor data, aligned. Format: ggml's `docs/gguf.md`.
//!
//! The file is memory-mapped and each tensor is dequantised to f32 only when asked
//! for, so reading the metadata of an 8B file costs nothing. Supported tensor types:
//! F32, F16, BF16, Q4_0, Q4_1 and Q8_0 (the types `llama-quantize` writes for
//! Q4_0/Q4_1/Q8_0/F16 files); K-quants are refused with their name.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use half::{bf16, f16};
use memmap2::Mmap;

use super::state_dict::HostTensor;

/// Arrays nested deeper than this are refused (real files nest one level).
const MAX_ARRAY_DEPTH: usize = 8;
/// Larger `general.alignment`s are refused (llama.cpp writes 32).
const MAX_ALIGNMENT: u64 = 1 << 20;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// ggml tensor types this reader dequantises (ids from `ggml.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    BF16,
}

impl TensorType {
    fn from_id(id: u32) -> Result<Self> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            10..=15 | 23 => bail!(
                "ggml type {id} is a K-quant, which realsyn does not dequantise yet: \
                 requantise the file to Q8_0, Q4_1, Q4_0 or F16 with llama.cpp's llama-quantize"
            ),
            _ => bail!("ggml tensor type {id} is not supported (F32, F16, BF16, Q4_0, Q4_1, Q8_0)"),
        })
    }

    /// (elements per block, bytes per block).
    fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            // f16 scale + 16 bytes of nibbles.
            Self::Q4_0 => (32, 18),
            // f16 scale + f16 min + 16 bytes of nibbles.
            Self::Q4_1 => (32, 20),
            // f16 scale + 32 signed bytes.
            Self::Q8_0 => (32, 34),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// ggml order: `dims[0]` is the fastest-varying (a row's length).
    pub dims: Vec<usize>,
    pub kind: TensorType,
    offset: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }
    /// The shape in PyTorch order (slowest first): a ggml [in, out] matrix is torch's
    /// `nn.Linear.weight` [out, in].
    pub fn torch_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
    fn bytes(&self) -> usize {
        let (per, bytes) = self.kind.block();
        self.elements() / per * bytes
    }
}

/// An open GGUF file.
pub struct Gguf {
    map: Mmap,
    data_start: usize,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).context("GGUF length overflow")?;
        ensure!(
            end <= self.bytes.len(),
            "GGUF header truncated at byte {}",
            self.at
        );
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()? as usize;
        let b = self.take(n)?;
        // Vocabularies hold byte tokens that are not always valid UTF-8 on their own.
        Ok(String::from_utf8_lossy(b).into_owned())
    }
    /// A value of type `kind`; `depth` counts the arrays it is nested in.
    fn value(&mut self, kind: u32, depth: usize) -> Result<Value> {
        Ok(match kind {
            0 => Value::U64(self.take(1)?[0] as u64),
            1 => Value::I64(self.take(1)?[0] as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.take(2)?.try_into()?) as u64),
            3 => Value::I64(i16::from_le_bytes(self.take(2)?.try_into()?) as i64),
            4 => Value::U64(self.u32()? as u64),
            5 => Value::I64(self.u32()? as i32 as i64),
            6 => Value::F64(f32::from_le_bytes(self.take(4)?.try_into()?) as f64),
            7 => Value::Bool(self.take(1)?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                // Real files nest one level (token lists); a chain of arrays of arrays
                // would recurse once per 12 bytes and overflow the stack.
                ensure!(
                    depth < MAX_ARRAY_DEPTH,
                    "GGUF arrays nested deeper than {MAX_ARRAY_DEPTH}"
                );
                let inner = self.u32()?;
                let n = self.u64()? as usize;
                ensure!(
                    n <= self.bytes.len() - self.at,
                    "GGUF array length {n} exceeds the file"
                );
                // A value is 32 bytes in memory and may be 1 in the file: grow as read
                // rather than reserving what the header declares.
                let mut items = Vec::with_capacity(n.min(1 << 12));
                for _ in 0..n {
                    items.push(self.value(inner, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_le_bytes(self.take(8)?.try_into()?)),
            _ => bail!("unknown GGUF metadata type {kind}"),
        })
    }
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: read-only map of a weight file nobody writes while we read it.
        let map =
            unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        Self::parse(map).with_context(|| format!("reading GGUF {}", path.display()))
    }

    fn parse(map: Mmap) -> Result<Self> {
        let mut c = Cursor { bytes: &map, at: 0 };
        ensure!(c.take(4)? == b"GGUF", "not a GGUF file (no GGUF magic)");
        let version = c.u32()?;
        ensure!(
            version == 2 || version == 3,
            "GGUF version {version}: realsyn reads versions 2 and 3"
        );
        let n_tensors = c.u64()? as usize;
        let n_kv = c.u64()? as usize;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let kind = c.u32()?;
            let value = c
                .value(kind, 0)
                .with_context(|| format!("metadata {key}"))?;
            metadata.insert(key, value);
        }
        let mut tensors = BTreeMap::new();
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()? as usize;
            ensure!(n_dims <= 4, "{name}: {n_dims} dimensions");
            let dims = (0..n_dims)
                .map(|_| c.u64().map(|d| d as usize))
                .collect::<Result<Vec<_>>>()?;
            let kind = TensorType::from_id(c.u32()?).with_context(|| name.clone())?;
            let offset = c.u64()? as usize;
            let elements = dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .with_context(|| format!("{name}: dimensions {dims:?} overflow"))?;
            ensure!(
                elements % kind.block().0 == 0,
                "{name}: {elements} elements is not a whole number of {kind:?} blocks"
            );
            // `bytes()` cannot overflow past this: blocks x block size fits.
            (elements / kind.block().0)
                .checked_mul(kind.block().1)
                .with_context(|| format!("{name}: dimensions {dims:?} overflow"))?;
            tensors.insert(name, TensorInfo { dims, kind, offset });
        }
        let align = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32);
        ensure!(
            (1..=MAX_ALIGNMENT).contains(&align),
            "general.alignment {align}: must be 1 to {MAX_ALIGNMENT} (GGUF's default is 32)"
        );
        let data_start = c.at.div_ceil(align as usize) * align as usize;
        for (name, t) in &tensors {
            let end = data_start
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.bytes()))
                .filter(|&end| end <= map.len());
            ensure!(
                end.is_some(),
                "{name} (offset {}, {} bytes) ends past the end of the file ({} bytes): the file is truncated",
                t.offset,
                t.bytes(),
                map.len()
            );
        }
        Ok(Self {
            map,
            data_start,
            metadata,
            tensors,
        })
    }

    pub fn get(&self, key: &str) -> Result<&Value> {
        self.metadata
            .get(key)
            .with_context(|| format!("GGUF metadata has no {key}"))
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.get(key)?
            .as_u64()
            .with_context(|| format!("GGUF {key} is not an integer"))
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        self.get(key)?
            .as_f64()
            .with_context(|| format!("GGUF {key} is not a number"))
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .as_str()
            .with_context(|| format!("GGUF {key} is not a string"))
    }

    /// One tensor dequantised to f32, in PyTorch's shape.
    pub fn tensor(&self, name: &str) -> Result<HostTensor> {
        let t = self
            .tensors
            .get(name)
            .with_context(|| format!("GGUF has no tensor {name}"))?;
        let start = self.data_start + t.offset;
        let bytes = &self.map[start..start + t.bytes()];
        Ok(HostTensor::new(t.torch_shape(), dequantize(t.kind, bytes)))
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// ggml's `dequantize_row_*` for one tensor's bytes.
pub fn dequantize(kind: TensorType, bytes: &[u8]) -> Vec<f32> {
    let (per, size) = kind.block();
    let mut out = Vec::with_capacity(bytes.len() / size * per);
    match kind {
        TensorType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        TensorType::F16 => out.extend(bytes.chunks_exact(2).map(|b| f16_at(b, 0))),
        TensorType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        // x = d * (q - 8); the low nibbles are elements 0..16, the high ones 16..32.
        TensorType::Q4_0 => {
            for b in bytes.chunks_exact(size) {
                let d = f16_at(b, 0);
                let qs = &b[2..18];
                out.extend(qs.iter().map(|q| ((q & 0x0f) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        // x = d * q + m.
        TensorType::Q4_1 => {
            for b in bytes.chunks_exact(size) {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                let qs = &b[4..20];
                out.extend(qs.iter().map(|q| (q & 0x0f) as f32 * d + m));
                out.extend(qs.iter().map(|q| (q >> 4) as f32 * d + m));
            }
        }
        TensorType::Q8_0 => {
            for b in bytes.chunks_exact(size) {
                let d = f16_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
            }
        }
    }
    out
}

/// A GGUF file (version 3) of `metadata` and `tensors` (name, type, ggml dims, raw
/// bytes): tests and fuzz seeds. Arrays take their element type from their first item.
pub fn encode(
    metadata: &[(&str, Value)],
    tensors: &[(&str, TensorType, &[usize], &[u8])],
) -> Vec<u8> {
    fn id(v: &Value) -> u32 {
        match v {
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::Bool(b) => out.push(*b as u8),
            Value::Str(s) => string(out, s),
            Value::U64(x) => out.extend(x.to_le_bytes()),
            Value::I64(x) => out.extend(x.to_le_bytes()),
            Value::F64(x) => out.extend(x.to_le_bytes()),
            Value::Array(items) => {
                out.extend(items.first().map_or(10, id).to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|i| value(out, i));
            }
        }
    }
    let type_id = |t: TensorType| match t {
        TensorType::F32 => 0u32,
        TensorType::F16 => 1,
        TensorType::Q4_0 => 2,
        TensorType::Q4_1 => 3,
        TensorType::Q8_0 => 8,
        TensorType::BF16 => 30,
    };
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        string(&mut out, k);
        out.extend(id(v).to_le_bytes());
        value(&mut out, v);
    }
    let mut offset = 0usize;
    for (name, kind, dims, data) in tensors {
        string(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        dims.iter()
            .for_each(|d| out.extend((*d as u64).to_le_bytes()));
        out.extend(type_id(*kind).to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offset += data.len().div_ceil(32) * 32;
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    for (_, _, _, data) in tensors {
        out.extend(*data);
        out.resize(out.len().div_ceil(32) * 32, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: Vec<u8>) -> Result<Gguf> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, bytes)?;
        Gguf::open(&p)
    }

    fn f32_bytes(x: &[f32]) -> Vec<u8> {
        x.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn an_encoded_file_reads_back() {
        let a = f32_bytes(&[1.0, -2.0, 3.5, 0.25, 5.0, 6.0]);
        let g = parse(encode(
            &[
                ("general.architecture", Value::Str("llama".into())),
                (
                    "tokenizer.ggml.tokens",
                    Value::Array(vec![Value::Str("a".into()), Value::Str("b".into())]),
                ),
            ],
            &[("w", TensorType::F32, &[3, 2], &a)],
        ))
        .unwrap();
        assert_eq!(g.str("general.architecture").unwrap(), "llama");
        let t = g.tensor("w").unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.data, vec![1.0, -2.0, 3.5, 0.25, 5.0, 6.0]);
    }

    /// Found by reading the parser for the fuzz target: each of these panicked,
    /// overflowed the stack or wrapped around before the fix.
    #[test]
    fn hostile_headers_are_errors() {
        let a = f32_bytes(&[1.0; 4]);
        // general.alignment 0: a division by zero.
        let zero = encode(
            &[("general.alignment", Value::U64(0))],
            &[("w", TensorType::F32, &[4], &a)],
        );
        let e = parse(zero).err().unwrap();
        assert!(format!("{e:#}").contains("general.alignment 0"), "{e:#}");
        // Dimensions whose product wraps around to 4 elements.
        let wrap = encode(&[], &[("w", TensorType::F32, &[1 << 62, 4, 4], &a)]);
        let e = parse(wrap).err().unwrap();
        assert!(format!("{e:#}").contains("overflow"), "{e:#}");
        // An offset that wraps the end past usize::MAX.
        let mut far = encode(&[], &[("w", TensorType::F32, &[4], &a)]);
        // magic, version, counts, then the tensor: name, n_dims, dims, type, offset.
        let offset_at = 4 + 4 + 8 + 8 + (8 + 1) + 4 + 8 + 4;
        far[offset_at..offset_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = parse(far).err().unwrap();
        assert!(format!("{e:#}").contains("past the end"), "{e:#}");
        // 100,000 arrays nested in one another (12 bytes each).
        let mut deep = b"GGUF".to_vec();
        deep.extend(3u32.to_le_bytes());
        deep.extend(0u64.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
        deep.push(b'k');
        deep.extend(9u32.to_le_bytes());
        for _ in 0..100_000 {
            deep.extend(9u32.to_le_bytes());
            deep.extend(1u64.to_le_bytes());
        }
        let e = parse(deep).err().unwrap();
        assert!(format!("{e:#}").contains("nested deeper"), "{e:#}");
    }

    #[test]
    fn q4_1_block_is_scale_times_nibble_plus_min() {
        let mut block = Vec::new();
        block.extend(f16::from_f32(0.5).to_le_bytes());
        block.extend(f16::from_f32(-1.0).to_le_bytes());
        // element i (low nibble) = i % 16, element 16 + i (high nibble) = 15 - i.
        block.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
        let x = dequantize(TensorType::Q4_1, &block);
        assert_eq!(x.len(), 32);
        assert_eq!(x[3], 3.0 * 0.5 - 1.0);
        assert_eq!(x[16], 15.0 * 0.5 - 1.0);
        assert_eq!(x[31], -1.0);
    }

    #[test]
    fn q4_0_and_q8_0_are_signed() {
        let mut q4 = f16::from_f32(2.0).to_le_bytes().to_vec();
        q4.extend([0x80u8; 16]);
        let x = dequantize(TensorType::Q4_0, &q4);
        assert_eq!((x[0], x[16]), (-16.0, 0.0));
        let mut q8 = f16::from_f32(0.25).to_le_bytes().to_vec();
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let y = dequantize(TensorType::Q8_0, &q8);
        assert_eq!((y[0], y[31]), (-4.0, 3.75));
    }
}
