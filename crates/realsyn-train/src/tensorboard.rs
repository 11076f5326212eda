//! A TensorBoard event-file writer: scalars and PNG images.
//!
//! Why not `tensorboard-rs`: it panics (`unimplemented!`) on text, hparams and
//! histograms, pulls protobuf 2.28 (RUSTSEC-2024-0437) and a second `image`. The
//! format is small: records of `len u64 | masked crc32c(len) | Event proto |
//! masked crc32c(data)`, with the few proto fields written by hand below.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Create `dir/events.out.tfevents.<time>.<host>.<pid>` (a new file per run or
    /// resume, as TensorBoard expects; it merges the files of a directory).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{}.{}",
            now().floor() as u64,
            host.trim(),
            std::process::id()
        );
        let path = dir.join(name);
        let out = BufWriter::new(
            File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        let mut w = Self { out, path };
        let mut ev = Vec::new();
        put_double(&mut ev, 1, now());
        put_bytes(&mut ev, 3, b"brain.Event:2");
        w.record(&ev)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) -> Result<()> {
        let mut v = Vec::new();
        put_bytes(&mut v, 1, tag.as_bytes());
        put_float(&mut v, 2, value as f32);
        self.summary(&v, step)
    }

    /// A PNG-encoded image.
    pub fn image_png(
        &mut self,
        tag: &str,
        png: &[u8],
        width: u32,
        height: u32,
        step: u64,
    ) -> Result<()> {
        let mut img = Vec::new();
        put_varint_field(&mut img, 1, height as u64);
        put_varint_field(&mut img, 2, width as u64);
        put_varint_field(&mut img, 3, 3);
        put_bytes(&mut img, 4, png);
        let mut v = Vec::new();
        put_bytes(&mut v, 1, tag.as_bytes());
        put_bytes(&mut v, 4, &img);
        self.summary(&v, step)
    }

    pub fn flush(&mut self) -> Result<()> {
        Ok(self.out.flush()?)
    }

    fn summary(&mut self, value: &[u8], step: u64) -> Result<()> {
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, value);
        let mut ev = Vec::new();
        put_double(&mut ev, 1, now());
        put_varint_field(&mut ev, 2, step);
        put_bytes(&mut ev, 5, &summary);
        self.record(&ev)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc32c(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc32c(data).to_le_bytes())?;
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, (field as u64) << 3);
    put_varint(out, v);
}
fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_varint(out, ((field as u64) << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_float(out: &mut Vec<u8>, field: u32, v: f32) {
    put_varint(out, ((field as u64) << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_varint(out, ((field as u64) << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// CRC-32C (Castagnoli), bitwise-table implementation.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut crc = !0u32;
    for b in data {
        crc = table[((crc ^ *b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masking of stored CRCs.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xA282_EAD8)
}

/// Read back `(tag, step, value)` scalars: used by tests and `realsyn` tools.
pub fn read_scalars(path: &Path) -> Result<Vec<(String, u64, f32)>> {
    let bytes = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into()?) as usize;
        anyhow::ensure!(
            u32::from_le_bytes(bytes[at + 8..at + 12].try_into()?)
                == masked_crc32c(&bytes[at..at + 8]),
            "bad length crc at {at}"
        );
        let data = bytes
            .get(at + 12..at + 12 + len)
            .context("truncated record")?;
        let crc = bytes
            .get(at + 12 + len..at + 16 + len)
            .context("truncated record")?;
        anyhow::ensure!(
            u32::from_le_bytes(crc.try_into()?) == masked_crc32c(data),
            "bad data crc at {at}"
        );
        parse_event(data, &mut out);
        at += 16 + len;
    }
    Ok(out)
}

fn get_varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while *at < b.len() {
        let x = b[*at];
        *at += 1;
        v |= ((x & 0x7F) as u64) << shift;
        if x < 0x80 {
            break;
        }
        shift += 7;
    }
    v
}

/// Walk `(field, wire type, payload)` of a proto message.
fn fields(b: &[u8]) -> Vec<(u64, &[u8], u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let key = get_varint(b, &mut at);
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = get_varint(b, &mut at);
                out.push((field, &b[0..0], v));
            }
            1 => {
                out.push((field, &b[at..at + 8], 0));
                at += 8;
            }
            2 => {
                let len = get_varint(b, &mut at) as usize;
                out.push((field, &b[at..at + len], 0));
                at += len;
            }
            5 => {
                out.push((field, &b[at..at + 4], 0));
                at += 4;
            }
            _ => break,
        }
    }
    out
}

fn parse_event(data: &[u8], out: &mut Vec<(String, u64, f32)>) {
    let ev = fields(data);
    let step = ev.iter().find(|f| f.0 == 2).map_or(0, |f| f.2);
    for (_, summary, _) in ev.iter().filter(|f| f.0 == 5) {
        for (_, value, _) in fields(summary).iter().filter(|f| f.0 == 1) {
            let vf = fields(value);
            let tag = vf
                .iter()
                .find(|f| f.0 == 1)
                .map(|f| String::from_utf8_lossy(f.1).into_owned());
            let val = vf
                .iter()
                .find(|f| f.0 == 2)
                .map(|f| f32::from_le_bytes(f.1.try_into().unwrap()));
            if let (Some(tag), Some(val)) = (tag, val) {
                out.push((tag, step, val));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn scalars_round_trip_through_the_record_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalar("train/loss", 2.5, 3).unwrap();
        w.scalar("train/lr", 1e-3, 300).unwrap();
        w.image_png("x", &[1, 2, 3], 1, 1, 4).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let s = read_scalars(&path).unwrap();
        assert_eq!(
            s,
            vec![
                ("train/loss".into(), 3, 2.5),
                ("train/lr".into(), 300, 1e-3)
            ]
        );
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_scalars(&path).is_err(), "a flipped bit fails the CRC");
    }
}
