//! A seeded random subset of a shard list written as new shards (the data-scaling
//! sweep's smaller datasets, paper appendix B.3). Subsets of one seed are nested:
//! the n samples kept are the first n of one permutation of all samples, so a
//! sweep's 10%, 20%, ... subsets grow by adding samples, never swapping them.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Result, bail};
use bytes::Bytes;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{ShardList, ShardWriter, SkipCounter, read_shard};

/// Write `n` samples of `source` (a brace pattern), chosen at random with `seed`,
/// in their original order, into `out` (`00000.tar`, ..., `sizes.json`). The
/// folder appears whole or not at all (written beside it, then renamed).
pub fn write_subset(
    source: &str,
    n: usize,
    seed: u64,
    per_shard: usize,
    out: &Path,
) -> Result<usize> {
    let list = ShardList::resolve(source)?;
    let skips = SkipCounter::new();
    let keys: Vec<String> = list
        .shards
        .iter()
        .flat_map(|s| read_shard(s, &skips))
        .map(|s| s.key)
        .collect();
    if n > keys.len() {
        bail!(
            "a subset of {n} samples from {source}, which has {}",
            keys.len()
        );
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let keep: HashSet<&str> = order[..n].iter().map(|&i| keys[i].as_str()).collect();
    let tmp = out.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let mut w = ShardWriter::new(&tmp, per_shard, 0)?;
    let mut written = 0;
    for s in list.shards.iter().flat_map(|s| read_shard(s, &skips)) {
        if keep.contains(s.key.as_str()) {
            let fields: Vec<(&str, Bytes)> = s
                .fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            w.write(&s.key, &fields)?;
            written += 1;
        }
    }
    w.finish()?;
    if skips.total() > 0 {
        bail!(
            "{source}: {} unreadable samples ({:?})",
            skips.total(),
            skips.snapshot()
        );
    }
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(written)
}
