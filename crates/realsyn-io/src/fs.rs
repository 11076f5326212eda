//! Atomic file writes: readers see the old file or the complete new one, never a
//! partial write, and a killed job leaves no half-written output behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Write `bytes` to `path` through a temp file in the same directory + rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // tempfile creates files 0600; published outputs get the usual 0644.
    #[cfg(unix)]
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// realsyn's cache of registry assets (`$REALSYN_CACHE`, else `~/.cache/realsyn`), where
/// `scripts/setup-system.sh` unpacks npm and PyPI data.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("REALSYN_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/realsyn")))
        .unwrap_or_else(|| PathBuf::from(".cache/realsyn"))
}
