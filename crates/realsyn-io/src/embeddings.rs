//! Embedding matrices and the one loop that fills them batch by batch.
//!
//! Every embedding path of realsyn (`realsyn embed`, eval features, the builder's
//! semantic dedup, and the clustering, retrieval and balance stages of the paper's
//! §3.2-3.3) runs `encode_in_batches` with its own encoder closure, so batching,
//! width checks and progress are written once.

use std::path::Path;

use anyhow::{Result, bail};

use crate::npy::{read_npy, write_npy};

/// `rows` vectors of `width` f32 values, row-major. In memory always f32; on disk
/// f32 or f16 (`write_npy_f16`, half the bytes for paper-scale stores).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embeddings {
    width: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// `data.len()` must be a multiple of `width` (an empty matrix may have any width).
    pub fn new(data: Vec<f32>, width: usize) -> Result<Self> {
        if width == 0 && !data.is_empty() {
            bail!("{} values with width 0", data.len());
        }
        if width > 0 && data.len() % width != 0 {
            bail!("{} values are not rows of width {width}", data.len());
        }
        Ok(Self { width, data })
    }

    /// No rows yet, of the given width.
    pub fn empty(width: usize) -> Self {
        Self {
            width,
            data: Vec::new(),
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.width..(i + 1) * self.width]
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Append the rows of `other` (same width; an empty matrix takes `other`'s).
    pub fn extend(&mut self, other: &Embeddings) -> Result<()> {
        if self.data.is_empty() && self.width != other.width {
            self.width = other.width;
        }
        if other.width != self.width && !other.data.is_empty() {
            bail!(
                "embeddings of width {} cannot join a matrix of width {}",
                other.width,
                self.width
            );
        }
        self.data.extend_from_slice(&other.data);
        Ok(())
    }

    /// Append one row.
    pub fn push_row(&mut self, row: &[f32]) -> Result<()> {
        if row.len() != self.width {
            bail!(
                "a row of {} values in a matrix of width {}",
                row.len(),
                self.width
            );
        }
        self.data.extend_from_slice(row);
        Ok(())
    }

    /// Keep the first `rows` rows.
    pub fn truncate(&mut self, rows: usize) {
        self.data.truncate(rows * self.width);
    }

    /// float32 `[rows, width]` `.npy`, atomically.
    pub fn write_npy(&self, path: &Path) -> Result<()> {
        write_npy(path, &self.data, &[self.rows(), self.width])
    }

    /// float16 `[rows, width]` `.npy`, atomically (half the bytes; ~3 significant digits,
    /// ample for cosine search between unit vectors).
    pub fn write_npy_f16(&self, path: &Path) -> Result<()> {
        let half: Vec<half::f16> = self.data.iter().map(|&x| half::f16::from_f32(x)).collect();
        write_npy(path, &half, &[self.rows(), self.width])
    }

    /// A `[rows, width]` `.npy` of float32 or float16.
    pub fn read_npy(path: &Path) -> Result<Self> {
        let (data, shape) = match read_npy::<f32>(path) {
            Ok(a) => a,
            Err(_) => {
                let (half, shape) = read_npy::<half::f16>(path)?;
                (half.into_iter().map(half::f16::to_f32).collect(), shape)
            }
        };
        let [_, width] = shape[..] else {
            bail!(
                "{}: a matrix has 2 dimensions, not {shape:?}",
                path.display()
            );
        };
        Self::new(data, width)
    }
}

/// Encode `items` in order, `batch_size` at a time, with `encode` (which returns one
/// row per item of its batch); `progress` is told how many items each batch held.
/// Every batch must give the same width. Items come as results (rows streamed from
/// a store, images decoded on the way): the first error ends the run and is returned.
pub fn encode_in_batches<T>(
    items: impl IntoIterator<Item = Result<T>>,
    batch_size: usize,
    encode: impl FnMut(&[T]) -> Result<Embeddings>,
    mut progress: impl FnMut(usize),
) -> Result<Embeddings> {
    let mut out = Embeddings::default();
    encode_in_batches_to(items, batch_size, encode, |rows| {
        progress(rows.rows());
        out.extend(rows)
    })?;
    Ok(out)
}

/// `encode_in_batches` handing each batch's rows to `sink` instead of collecting
/// them: for outputs larger than memory (streamed to an `NpyRowWriter`).
pub fn encode_in_batches_to<T>(
    items: impl IntoIterator<Item = Result<T>>,
    batch_size: usize,
    mut encode: impl FnMut(&[T]) -> Result<Embeddings>,
    mut sink: impl FnMut(&Embeddings) -> Result<()>,
) -> Result<()> {
    if batch_size == 0 {
        bail!("the batch size must be at least 1");
    }
    let mut width: Option<usize> = None;
    let mut batch = Vec::with_capacity(batch_size);
    let mut flush = |batch: &mut Vec<T>| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows = encode(batch)?;
        if rows.rows() != batch.len() {
            bail!(
                "the encoder returned {} rows for a batch of {}",
                rows.rows(),
                batch.len()
            );
        }
        match width {
            Some(w) if w != rows.width() => bail!(
                "the encoder returned rows of width {} after rows of width {w}",
                rows.width()
            ),
            _ => width = Some(rows.width()),
        }
        sink(&rows)?;
        batch.clear();
        Ok(())
    };
    for item in items {
        batch.push(item?);
        if batch.len() == batch_size {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_order_and_check_rows() {
        let mut seen = Vec::new();
        let e = encode_in_batches(
            (0..5).map(Ok),
            2,
            |b: &[i32]| Embeddings::new(b.iter().flat_map(|&x| [x as f32, -x as f32]).collect(), 2),
            |n| seen.push(n),
        )
        .unwrap();
        assert_eq!(seen, [2, 2, 1]);
        assert_eq!((e.rows(), e.width()), (5, 2));
        assert_eq!(e.row(3), [3.0, -3.0]);
        let short = encode_in_batches(
            (0..3).map(Ok),
            2,
            |_: &[i32]| Ok(Embeddings::empty(2)),
            |_| {},
        );
        assert!(
            short
                .unwrap_err()
                .to_string()
                .contains("0 rows for a batch of 2")
        );
        let mut m = Embeddings::new(vec![1.0; 4], 2).unwrap();
        assert!(
            m.extend(&Embeddings::new(vec![1.0; 3], 3).unwrap())
                .is_err()
        );
        assert!(Embeddings::new(vec![1.0; 3], 2).is_err());
    }

    #[test]
    fn npy_round_trip_in_both_precisions() {
        let dir = tempfile::tempdir().unwrap();
        let e = Embeddings::new(vec![0.5, -0.25, 1.0, 0.125, 3.0, -2.0], 3).unwrap();
        e.write_npy(&dir.path().join("a.npy")).unwrap();
        e.write_npy_f16(&dir.path().join("b.npy")).unwrap();
        assert_eq!(Embeddings::read_npy(&dir.path().join("a.npy")).unwrap(), e);
        // These values are exact in f16.
        assert_eq!(Embeddings::read_npy(&dir.path().join("b.npy")).unwrap(), e);
        assert_eq!(
            std::fs::metadata(dir.path().join("b.npy")).unwrap().len(),
            128 + 12
        );
    }
}
