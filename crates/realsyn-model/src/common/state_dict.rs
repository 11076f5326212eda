//! A framework-neutral state dict: named f32 arrays in PyTorch's layout. Every file
//! format is read into / written from this, and every model mapping works on it.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};

#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// A Burn tensor's data (any float dtype) as f32 on the host, same layout.
    pub fn from_data(data: burn::tensor::TensorData) -> Result<Self> {
        let shape = data.shape.to_vec();
        let values = data
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| anyhow!("{e:?}"))?;
        Ok(Self::new(shape, values))
    }

    /// Transpose a 2-d tensor ([out, in] <-> [in, out]).
    pub fn transposed(&self) -> Result<Self> {
        let [r, c] = self.shape[..] else {
            bail!("transpose needs a 2-d tensor, got shape {:?}", self.shape)
        };
        let mut data = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                data[j * r + i] = self.data[i * c + j];
            }
        }
        Ok(Self::new(vec![c, r], data))
    }

    /// Split along the first dimension into `n` equal parts.
    pub fn chunk_rows(&self, n: usize) -> Result<Vec<Self>> {
        let rows = *self
            .shape
            .first()
            .ok_or_else(|| anyhow!("cannot split a scalar"))?;
        if rows % n != 0 {
            bail!("cannot split {rows} rows into {n} parts");
        }
        let per = self.data.len() / n;
        let mut shape = self.shape.clone();
        shape[0] = rows / n;
        Ok(self
            .data
            .chunks(per)
            .map(|c| Self::new(shape.clone(), c.to_vec()))
            .collect())
    }

    /// Concatenate along the first dimension.
    pub fn cat_rows(parts: &[Self]) -> Result<Self> {
        let first = parts
            .first()
            .ok_or_else(|| anyhow!("nothing to concatenate"))?;
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        if parts.iter().any(|p| p.shape[1..] != first.shape[1..]) {
            bail!("concatenating tensors of different trailing shapes");
        }
        Ok(Self::new(
            shape,
            parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
        ))
    }
}

/// Named tensors, sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    pub tensors: BTreeMap<String, HostTensor>,
}

impl StateDict {
    pub fn insert(&mut self, key: impl Into<String>, t: HostTensor) {
        self.tensors.insert(key.into(), t);
    }

    pub fn get(&self, key: &str) -> Option<&HostTensor> {
        self.tensors.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// Remove Hugging Face's separate `{prefix}{q,k,v}_proj.{suffix}` and return them
    /// stacked along the first dimension: the packed `in_proj` layout of the shared
    /// attention block.
    pub fn take_packed_qkv(&mut self, prefix: &str, suffix: &str) -> Result<HostTensor> {
        let qkv: Vec<HostTensor> = ["q", "k", "v"]
            .iter()
            .map(|p| self.take(&format!("{prefix}{p}_proj.{suffix}")))
            .collect::<Result<_>>()?;
        HostTensor::cat_rows(&qkv)
    }

    /// Remove and return a tensor; a missing key is an error naming it.
    pub fn take(&mut self, key: &str) -> Result<HostTensor> {
        self.tensors
            .remove(key)
            .ok_or_else(|| anyhow!("weights have no tensor named {key:?}"))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Drop a prefix such as `module.` (DDP) from every key that has it.
    pub fn strip_prefix(self, prefix: &str) -> Self {
        Self {
            tensors: self
                .tensors
                .into_iter()
                .map(|(k, v)| (k.strip_prefix(prefix).map(str::to_string).unwrap_or(k), v))
                .collect(),
        }
    }

    /// Number of `<prefix>N.` blocks present (e.g. transformer layers).
    pub fn count_blocks(&self, prefix: &str) -> usize {
        self.keys()
            .filter_map(|k| {
                k.strip_prefix(prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1)
    }
}
