//! One shard -> its samples, tolerating damage: a truncated or corrupt archive ends
//! that shard (counted), it never ends the run.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use webdataset::core::Value;
use webdataset::core::handlers::ignore_and_continue;
use webdataset::shard::Selection;
use webdataset::shard::reader::{FileEvent, Grouped, Grouper, ShardFiles};

use super::skips::SkipCounter;

/// One sample as stored: `KEY.ext` members grouped under `KEY`, extensions lower-cased.
#[derive(Debug, Clone)]
pub struct RawSample {
    pub key: String,
    /// The shard it came from (for messages).
    pub shard: Arc<str>,
    pub fields: BTreeMap<String, Bytes>,
}

impl RawSample {
    pub fn get(&self, ext: &str) -> Option<&Bytes> {
        self.fields.get(ext)
    }

    /// The first present field among `exts` (e.g. `["jpg", "jpeg", "png", "webp"]`).
    pub fn first_of(&self, exts: &[&str]) -> Option<&Bytes> {
        exts.iter().find_map(|e| self.fields.get(*e))
    }

    pub fn describe(&self) -> String {
        format!("{} in {}", self.key, self.shard)
    }
}

/// Stream the samples of `path`. Unreadable shards and truncated archives are
/// counted in `skips`; the samples before the damage are still produced.
pub fn read_shard(path: &Path, skips: &SkipCounter) -> impl Iterator<Item = RawSample> + use<> {
    let name: Arc<str> = path.display().to_string().into();
    let skips = skips.clone();
    let files = File::open(path).map_err(|e| e.to_string()).and_then(|f| {
        ShardFiles::new(
            Box::new(BufReader::with_capacity(1 << 20, f)),
            None,
            None,
            Selection::new(),
        )
        .map_err(|e| e.to_string())
    });
    let files = match files {
        Ok(files) => Some(files),
        Err(e) => {
            skips.skip("unreadable shard", &format!("{name} ({e})"));
            None
        }
    };
    SampleIter {
        files,
        grouper: Grouper::new(ignore_and_continue()),
        shard: name,
        skips,
    }
}

struct SampleIter {
    files: Option<ShardFiles>,
    grouper: Grouper,
    shard: Arc<str>,
    skips: SkipCounter,
}

impl Iterator for SampleIter {
    type Item = RawSample;

    fn next(&mut self) -> Option<RawSample> {
        loop {
            let files = self.files.as_mut()?;
            let grouped = match files.next() {
                Some(Ok(file)) => self.grouper.push(FileEvent::File(file)),
                Some(Err(e)) => {
                    // Members before the damage are whole (a cut member is an error,
                    // not data), so the sample being assembled is kept, as Python
                    // webdataset keeps it; if it lacks its image or text it is
                    // skipped downstream for that reason.
                    self.skips.skip(
                        "truncated or corrupt tar",
                        &format!("{} ({})", self.shard, tar_error(&e)),
                    );
                    self.files = None;
                    match self.grouper.finish() {
                        Some(s) => Grouped::Sample(s),
                        None => return None,
                    }
                }
                None => {
                    self.files = None;
                    match self.grouper.finish() {
                        Some(s) => Grouped::Sample(s),
                        None => return None,
                    }
                }
            };
            if let Grouped::Sample(sample) = grouped {
                return Some(self.convert(sample));
            }
        }
    }
}

/// A tar reader's error as one clause: the crate wraps errors in a context that
/// may be empty, which printed as "(: malformed input: ...)".
fn tar_error(e: &dyn std::fmt::Display) -> String {
    let mut msg = e.to_string();
    while let Some(rest) = msg.strip_prefix(": ") {
        msg = rest.to_string();
    }
    msg
}

impl SampleIter {
    fn convert(&self, sample: webdataset::core::Sample) -> RawSample {
        let key = sample.key().unwrap_or_default().to_string();
        let fields = sample
            .into_map()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("__"))
            .filter_map(|(k, v)| match v {
                Value::Bytes(b) => Some((k, b)),
                Value::Text(t) => Some((k, Bytes::from(t.into_bytes()))),
                _ => None,
            })
            .collect();
        RawSample {
            key,
            shard: self.shard.clone(),
            fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use webdataset::core::error::Error;

    #[test]
    fn tar_errors_read_as_one_clause() {
        let e = Error::format("unexpected end of archive").context("");
        assert_eq!(
            e.to_string(),
            ": malformed input: unexpected end of archive"
        );
        assert_eq!(
            super::tar_error(&e),
            "malformed input: unexpected end of archive"
        );
        let e = Error::format("bad header").context("shard 3");
        assert_eq!(super::tar_error(&e), "shard 3: malformed input: bad header");
    }
}
