//! One dataset shard as img2dataset writes it, for the `write` stage and for
//! downloads of released parquets alike: `NNNNN.tar` (`KEY.jpg`, `KEY.txt`,
//! `KEY.json`), then `NNNNN.parquet` with one row per sample tried, written or not,
//! with its status, then `NNNNN_stats.json`, written last and atomically: its
//! presence marks the shard done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use bytes::Bytes;
use realsyn_data::wds::ShardWriter;

use super::ShardStats;
use super::parquet::Table;

/// A sample's row of the shard's parquet.
pub struct ShardRow {
    pub key: String,
    pub url: String,
    /// text1, text2, text3, syn_text.
    pub texts: [Option<String>; 4],
    /// `success`, or why the sample is not in the tar.
    pub status: String,
    pub size: (u32, u32),
    pub original: (u32, u32),
    /// Columns after img2dataset's, in this order (the `write` stage's provenance).
    pub extra: Vec<(&'static str, String)>,
}

/// What goes into the tar for a sample that succeeded.
pub struct ShardFiles {
    pub jpg: Vec<u8>,
    pub txt: String,
    pub json: Vec<u8>,
}

pub struct DatasetShard {
    dir: PathBuf,
    index: usize,
    tar: ShardWriter,
    rows: Vec<ShardRow>,
    status: BTreeMap<String, usize>,
}

impl DatasetShard {
    /// Shard `index` of `dir`, its keys sized for `per` samples.
    pub fn create(dir: &Path, per: usize, index: usize) -> Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
            tar: ShardWriter::new(dir, per, index)?,
            rows: Vec::new(),
            status: BTreeMap::new(),
        })
    }

    /// One sample: its files go into the tar when it succeeded, its row into the
    /// parquet either way.
    pub fn add(&mut self, row: ShardRow, files: Option<ShardFiles>) -> Result<()> {
        if let Some(f) = files {
            self.tar.write(
                &row.key,
                &[
                    ("jpg", Bytes::from(f.jpg)),
                    ("txt", Bytes::from(f.txt)),
                    ("json", Bytes::from(f.json)),
                ],
            )?;
        }
        *self.status.entry(row.status.clone()).or_default() += 1;
        self.rows.push(row);
        Ok(())
    }

    /// Close the tar, write the parquet, then the stats. `failed_to_download`
    /// counts the samples whose image never arrived; the other failures are
    /// img2dataset's `failed_to_resize` (unreadable or not encodable).
    pub fn finish(self, failed_to_download: usize, variant: &str) -> Result<ShardStats> {
        self.tar.close()?;
        let rows = &self.rows;
        let s = |f: &dyn Fn(&ShardRow) -> Option<String>| rows.iter().map(f).collect();
        let i = |f: &dyn Fn(&ShardRow) -> u32| rows.iter().map(|r| Some(f(r) as i64)).collect();
        let mut table = Table::default()
            .str("key", s(&|r| Some(r.key.clone())))
            .str("url", s(&|r| Some(r.url.clone())))
            .str("text1", s(&|r| r.texts[0].clone()))
            .str("text2", s(&|r| r.texts[1].clone()))
            .str("text3", s(&|r| r.texts[2].clone()))
            .str("syn_text", s(&|r| r.texts[3].clone()))
            .str("status", s(&|r| Some(r.status.clone())))
            .str(
                "error_message",
                s(&|r| (r.status != "success").then(|| r.status.clone())),
            )
            .int("width", i(&|r| r.size.0))
            .int("height", i(&|r| r.size.1))
            .int("original_width", i(&|r| r.original.0))
            .int("original_height", i(&|r| r.original.1));
        let extra: Vec<&'static str> = rows
            .first()
            .map(|r| r.extra.iter().map(|(name, _)| *name).collect())
            .unwrap_or_default();
        for (c, name) in extra.iter().enumerate() {
            table = table.str(name, s(&|r| r.extra.get(c).map(|(_, v)| v.clone())));
        }
        table.write(&self.dir.join(format!("{:05}.parquet", self.index)))?;
        let count = rows.len();
        let successes = self.status.get("success").copied().unwrap_or(0);
        let stats = ShardStats {
            count,
            successes,
            failed_to_download,
            failed_to_resize: count - successes - failed_to_download,
            status_dict: self.status,
            variant: variant.to_string(),
        };
        realsyn_io::fs::write_atomic(
            &self.dir.join(format!("{:05}_stats.json", self.index)),
            &serde_json::to_vec_pretty(&stats)?,
        )?;
        Ok(stats)
    }
}
