//! An append-only journal of finished work: records are appended in batches, each
//! batch flushed and fsynced before the next starts, so a kill loses at most the
//! batch in flight. Reopening drops a half-written last line and keeps the rest.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Open (or create) the journal at `path`; returns it with the records already
    /// committed, in order.
    pub fn open<T: DeserializeOwned>(path: &Path) -> Result<(Self, Vec<T>)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut records = Vec::new();
        let mut good = 0u64;
        let mut reader = BufReader::new(&mut file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            let complete = line.ends_with('\n');
            match serde_json::from_str::<T>(line.trim_end()) {
                Ok(r) if complete => {
                    records.push(r);
                    good += n as u64;
                }
                // The line a kill cut short: everything after it is dropped.
                _ if !complete => break,
                Err(e) => bail!(
                    "{}: record {} is corrupt ({e}); delete the journal to redo this part",
                    path.display(),
                    records.len() + 1
                ),
                Ok(_) => unreachable!(),
            }
        }
        drop(reader);
        file.set_len(good)?;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
            },
            records,
        ))
    }

    /// Append a batch and make it durable.
    pub fn append<T: Serialize>(&mut self, records: &[T]) -> Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
        self.file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("appending to {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_last_line_is_dropped_and_appending_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (mut j, old) = Journal::open::<u32>(&p).unwrap();
        assert!(old.is_empty());
        j.append(&[1u32, 2]).unwrap();
        drop(j);
        // A kill in the middle of the next batch.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"3\n4").unwrap();
        drop(f);
        let (mut j, old) = Journal::open::<u32>(&p).unwrap();
        assert_eq!(old, vec![1, 2, 3]);
        j.append(&[4u32]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1\n2\n3\n4\n");
    }
}
