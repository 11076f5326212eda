//! Fan-out and resume: `--shard i/N` picks part i of N of a stage's input; each part
//! is written into a temporary directory and renamed into place when complete, so a
//! finished part is never redone and a killed part leaves nothing that looks done.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: usize,
    pub count: usize,
}

impl Default for ShardSpec {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for ShardSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (i, n) = s
            .split_once('/')
            .with_context(|| format!("--shard {s:?}: expected i/N, e.g. 3/16"))?;
        let (index, count): (usize, usize) = (i.trim().parse()?, n.trim().parse()?);
        if count == 0 || index >= count {
            bail!("--shard {s:?}: need 0 <= i < N");
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl ShardSpec {
    pub fn all(count: usize) -> impl Iterator<Item = ShardSpec> {
        (0..count).map(move |index| ShardSpec { index, count })
    }

    /// Whether item `k` of an ordered input belongs to this part.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count == self.index
    }

    /// `part-00003-of-00016`
    pub fn dir_name(&self) -> String {
        format!("part-{:05}-of-{:05}", self.index, self.count)
    }
}

/// A stage's output for one part, written under a temporary name and published by
/// `commit`. Dropping it without committing removes the temporary directory.
pub struct PartWriter {
    pub tmp: PathBuf,
    final_dir: PathBuf,
    committed: bool,
}

impl PartWriter {
    /// `None` when `stage_dir/part-i-of-N` is already complete (skip it on re-run).
    pub fn begin(stage_dir: &Path, shard: ShardSpec) -> Result<Option<Self>> {
        let final_dir = stage_dir.join(shard.dir_name());
        if final_dir.join("funnel.json").exists() {
            return Ok(None);
        }
        let tmp = stage_dir.join(format!(".tmp-{}", shard.dir_name()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("clearing {}", tmp.display()))?;
        }
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Some(Self {
            tmp,
            final_dir,
            committed: false,
        }))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Publish the part (one rename).
    pub fn commit(mut self) -> Result<PathBuf> {
        if self.final_dir.exists() {
            std::fs::remove_dir_all(&self.final_dir)?;
        }
        std::fs::rename(&self.tmp, &self.final_dir)
            .with_context(|| format!("publishing {}", self.final_dir.display()))?;
        self.committed = true;
        Ok(self.final_dir.clone())
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The complete parts of a stage, in order; an error names missing ones.
pub fn complete_parts(stage_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(stage_dir)
        .with_context(|| format!("reading {} (run the stage first)", stage_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
                && p.join("funnel.json").exists()
        })
        .collect();
    parts.sort();
    let Some(first) = parts.first() else {
        bail!("{} has no finished parts", stage_dir.display());
    };
    let name = first.file_name().unwrap().to_string_lossy().to_string();
    let count: usize = name
        .rsplit("-of-")
        .next()
        .unwrap_or("1")
        .parse()
        .unwrap_or(1);
    if parts.len() != count {
        let have: Vec<String> = parts
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        let missing: Vec<String> = ShardSpec::all(count)
            .map(|s| s.dir_name())
            .filter(|d| !have.contains(d))
            .collect();
        bail!(
            "{}: {} of {count} parts finished; still to run: {}",
            stage_dir.display(),
            parts.len(),
            missing.join(", ")
        );
    }
    Ok(parts)
}
