//! Shard lists as open_clip accepts them: brace patterns (`/data/{00000..00999}.tar`),
//! several sources joined by `::`, and the sample count from `sizes.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// An ordered list of shard files and, when known, the samples in each.
#[derive(Debug, Clone)]
pub struct ShardList {
    pub shards: Vec<PathBuf>,
    /// Samples per shard, from `sizes.json` or img2dataset's `*_stats.json`.
    pub sizes: Option<Vec<u64>>,
}

impl ShardList {
    /// Expand `spec` and look up the sample counts. Every shard must exist.
    pub fn resolve(spec: &str) -> Result<Self> {
        let shards = expand_shards(spec)?;
        let missing: Vec<_> = shards.iter().filter(|p| !p.is_file()).take(3).collect();
        if !missing.is_empty() {
            bail!(
                "{} of {} shards named by {spec:?} do not exist, e.g. {missing:?}",
                shards.iter().filter(|p| !p.is_file()).count(),
                shards.len()
            );
        }
        let sizes = shards
            .iter()
            .map(|s| shard_size(s))
            .collect::<Result<Option<Vec<u64>>>>()?;
        Ok(Self { shards, sizes })
    }

    /// Total samples, if every shard's count is known.
    pub fn num_samples(&self) -> Option<u64> {
        self.sizes.as_ref().map(|s| s.iter().sum())
    }
}

/// Brace-expand each `::`-separated source, in order.
pub fn expand_shards(spec: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for source in spec.split("::").map(str::trim).filter(|s| !s.is_empty()) {
        let expanded = webdataset::braceexpand(source)
            .map_err(|e| anyhow::anyhow!("bad shard pattern {source:?}: {e}"))?;
        out.extend(expanded.into_iter().map(PathBuf::from));
    }
    if out.is_empty() {
        bail!("shard spec {spec:?} names no shards");
    }
    Ok(out)
}

/// The shards rank `rank` of `world` reads: every `world`-th, as webdataset's
/// `split_by_node` does. Errors if a rank would get none.
pub fn split_for_rank(shards: &[PathBuf], rank: usize, world: usize) -> Result<Vec<PathBuf>> {
    if world == 0 || rank >= world {
        bail!("rank {rank} is not in a world of {world}");
    }
    let mine: Vec<PathBuf> = shards.iter().skip(rank).step_by(world).cloned().collect();
    if mine.is_empty() {
        bail!(
            "{} shards cannot be split over {world} ranks: write more, smaller shards",
            shards.len()
        );
    }
    Ok(mine)
}

/// Samples in one shard: `sizes.json` beside it (open_clip), else
/// `NAME_stats.json` (img2dataset's `successes`). `None` when neither exists.
fn shard_size(shard: &Path) -> Result<Option<u64>> {
    let dir = shard.parent().unwrap_or(Path::new("."));
    let name = shard
        .file_name()
        .and_then(|n| n.to_str())
        .context("shard path has no file name")?;
    let sizes_path = dir.join("sizes.json");
    if sizes_path.is_file() {
        let sizes: BTreeMap<String, u64> = serde_json::from_slice(&std::fs::read(&sizes_path)?)
            .with_context(|| format!("{} is not a {{shard: count}} map", sizes_path.display()))?;
        if let Some(n) = sizes.get(name) {
            return Ok(Some(*n));
        }
    }
    let stem = name.split('.').next().unwrap_or(name);
    let stats_path = dir.join(format!("{stem}_stats.json"));
    if stats_path.is_file() {
        let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats_path)?)
            .with_context(|| format!("{} is not JSON", stats_path.display()))?;
        if let Some(n) = stats.get("successes").and_then(|v| v.as_u64()) {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_and_sources_expand_in_order() {
        let s = expand_shards("/d/{000..002}.tar::/e/x-{a,b}.tar").unwrap();
        let s: Vec<_> = s.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            s,
            [
                "/d/000.tar",
                "/d/001.tar",
                "/d/002.tar",
                "/e/x-a.tar",
                "/e/x-b.tar"
            ]
        );
    }

    #[test]
    fn ranks_take_interleaved_shards() {
        let s = expand_shards("{0..4}.tar").unwrap();
        let r1 = split_for_rank(&s, 1, 2).unwrap();
        assert_eq!(r1, vec![PathBuf::from("1.tar"), PathBuf::from("3.tar")]);
        assert!(split_for_rank(&s[..1], 1, 2).is_err());
    }

    #[test]
    fn sizes_json_and_img2dataset_stats_give_counts() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["00000.tar", "00001.tar"] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        std::fs::write(dir.path().join("sizes.json"), br#"{"00000.tar": 7}"#).unwrap();
        std::fs::write(
            dir.path().join("00001_stats.json"),
            br#"{"count": 10, "successes": 9}"#,
        )
        .unwrap();
        let spec = format!("{}/{{00000..00001}}.tar", dir.path().display());
        let list = ShardList::resolve(&spec).unwrap();
        assert_eq!(list.sizes, Some(vec![7, 9]));
        assert_eq!(list.num_samples(), Some(16));
        assert!(ShardList::resolve(&format!("{}/0000{{0..2}}.tar", dir.path().display())).is_err());
    }
}
