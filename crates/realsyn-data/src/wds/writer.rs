//! Writing numbered shards (`00000.tar`, `00001.tar`, ...) the way img2dataset lays
//! them out, each one atomically: a shard is written under a temporary name and
//! renamed when complete, so a killed job never leaves a half shard that looks whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use webdataset::core::{Sample, Value};
use webdataset::shard::{Compression, TarWriter};

use realsyn_io::fs::write_atomic;

pub struct ShardWriter {
    dir: PathBuf,
    max_per_shard: usize,
    next_shard: usize,
    open: Option<OpenShard>,
    /// `shard file name -> samples`, merged into `sizes.json` at `finish`.
    sizes: BTreeMap<String, u64>,
}

struct OpenShard {
    writer: TarWriter,
    index: usize,
    count: usize,
    tmp: PathBuf,
    path: PathBuf,
}

impl ShardWriter {
    /// Write shards into `dir` (created), starting at shard number `first_shard`
    /// (a fan-out job writing part i of N passes its own range).
    pub fn new(dir: &Path, max_per_shard: usize, first_shard: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_per_shard: max_per_shard.max(1),
            next_shard: first_shard,
            open: None,
            sizes: BTreeMap::new(),
        })
    }

    /// img2dataset's key for the next sample: 5-digit shard id, 4-digit index.
    pub fn next_key(&self) -> String {
        match &self.open {
            Some(s) if s.count < self.max_per_shard => format!("{:05}{:04}", s.index, s.count),
            _ => format!("{:05}{:04}", self.next_shard, 0),
        }
    }

    /// The file name of the shard being written (`00003.tar`), where the last
    /// `write` went; `None` before the first write.
    pub fn open_shard_name(&self) -> Option<String> {
        self.open.as_ref().map(|s| format!("{:05}.tar", s.index))
    }

    /// Append one sample: `(extension, bytes)` fields stored as `KEY.extension`.
    pub fn write(&mut self, key: &str, fields: &[(&str, Bytes)]) -> Result<()> {
        if self
            .open
            .as_ref()
            .is_some_and(|s| s.count >= self.max_per_shard)
        {
            self.close_shard()?;
        }
        if self.open.is_none() {
            self.open_shard()?;
        }
        let shard = self.open.as_mut().expect("opened above");
        let mut sample = Sample::with_key(key);
        for (ext, data) in fields {
            sample.insert(*ext, Value::Bytes(data.clone()));
        }
        shard
            .writer
            .write(&sample)
            .map_err(|e| anyhow!("writing {key} to {}: {e}", shard.path.display()))?;
        shard.count += 1;
        Ok(())
    }

    fn open_shard(&mut self) -> Result<()> {
        let name = format!("{:05}.tar", self.next_shard); // as open_shard_name
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let writer = TarWriter::new(Box::new(BufWriter::new(file)), Compression::None)
            .map_err(|e| anyhow!("{e}"))?
            // A fixed mtime makes a re-run byte-identical to the first run.
            .with_mtime(Some(0));
        self.open = Some(OpenShard {
            writer,
            index: self.next_shard,
            count: 0,
            tmp,
            path,
        });
        self.next_shard += 1;
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        let Some(shard) = self.open.take() else {
            return Ok(());
        };
        shard
            .writer
            .close()
            .map_err(|e| anyhow!("finishing {}: {e}", shard.path.display()))?;
        File::open(&shard.tmp)?.sync_all()?;
        std::fs::rename(&shard.tmp, &shard.path)
            .with_context(|| format!("renaming into {}", shard.path.display()))?;
        let name = shard
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        self.sizes.insert(name, shard.count as u64);
        Ok(())
    }

    /// Close the last shard and merge the counts into `sizes.json`. Returns the
    /// shard paths written by this writer.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        self.close_shard()?;
        self.merge_sizes()?;
        Ok(self.sizes.keys().map(|n| self.dir.join(n)).collect())
    }

    /// Close the last shard without touching `sizes.json` (for a fan-out job whose
    /// `sizes.json` is written once every part is done); `shard file -> samples`.
    pub fn close(mut self) -> Result<BTreeMap<String, u64>> {
        self.close_shard()?;
        Ok(std::mem::take(&mut self.sizes))
    }

    fn merge_sizes(&self) -> Result<()> {
        let sizes_path = self.dir.join("sizes.json");
        let mut all: BTreeMap<String, u64> = match std::fs::read(&sizes_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a {{shard: count}} map", sizes_path.display())
            })?,
            Err(_) => BTreeMap::new(),
        };
        all.extend(self.sizes.iter().map(|(k, v)| (k.clone(), *v)));
        write_atomic(&sizes_path, &serde_json::to_vec_pretty(&all)?)
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        // An unfinished shard is removed, never renamed into place.
        if let Some(shard) = self.open.take() {
            drop(shard.writer);
            let _ = std::fs::remove_file(&shard.tmp);
        }
    }
}
