//! Parquet tables of strings and integers, written with parquet's column API (no
//! Arrow): img2dataset's per-shard metadata (`NNNNN.parquet`) and the released
//! RealSyn format (`raw_image_url, text1, text2, text3, syn_text`), both read by
//! pandas / pyarrow. Also reads the released format back, row by row.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;

/// One column: optional strings or optional integers.
pub enum Column {
    Str(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

/// Named columns of equal length.
#[derive(Default)]
pub struct Table {
    columns: Vec<(String, Column)>,
}

impl Table {
    pub fn str(mut self, name: &str, values: Vec<Option<String>>) -> Self {
        self.columns.push((name.into(), Column::Str(values)));
        self
    }

    pub fn int(mut self, name: &str, values: Vec<Option<i64>>) -> Self {
        self.columns.push((name.into(), Column::Int(values)));
        self
    }

    /// Written atomically (snappy pages, as pyarrow writes by default).
    pub fn write(&self, path: &Path) -> Result<()> {
        let fields: Vec<String> = self
            .columns
            .iter()
            .map(|(name, c)| match c {
                Column::Str(_) => format!("OPTIONAL BYTE_ARRAY {name} (UTF8);"),
                Column::Int(_) => format!("OPTIONAL INT64 {name};"),
            })
            .collect();
        let schema = Arc::new(parse_message_type(&format!(
            "message schema {{ {} }}",
            fields.join(" ")
        ))?);
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let mut buf = Vec::new();
        let mut w = SerializedFileWriter::new(&mut buf, schema, props)?;
        let mut rg = w.next_row_group()?;
        let mut cols = self.columns.iter();
        while let Some(mut col) = rg.next_column()? {
            let (_, c) = cols.next().expect("one writer per column");
            match c {
                Column::Str(v) => {
                    let def: Vec<i16> = v.iter().map(|x| x.is_some() as i16).collect();
                    let vals: Vec<ByteArray> = v
                        .iter()
                        .flatten()
                        .map(|s| ByteArray::from(s.as_str()))
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&vals, Some(&def), None)?;
                }
                Column::Int(v) => {
                    let def: Vec<i16> = v.iter().map(|x| x.is_some() as i16).collect();
                    let vals: Vec<i64> = v.iter().flatten().copied().collect();
                    col.typed::<Int64Type>()
                        .write_batch(&vals, Some(&def), None)?;
                }
            }
            col.close()?;
        }
        rg.close()?;
        w.close()?;
        realsyn_io::fs::write_atomic(path, &buf)
    }
}

/// One row of the released RealSyn parquet.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReleasedRow {
    pub raw_image_url: String,
    pub text1: String,
    pub text2: Option<String>,
    pub text3: Option<String>,
    pub syn_text: Option<String>,
}

/// The released format's columns.
pub const RELEASED_COLUMNS: [&str; 5] = ["raw_image_url", "text1", "text2", "text3", "syn_text"];

pub fn write_released(path: &Path, rows: &[ReleasedRow]) -> Result<()> {
    Table::default()
        .str(
            "raw_image_url",
            rows.iter().map(|r| Some(r.raw_image_url.clone())).collect(),
        )
        .str(
            "text1",
            rows.iter().map(|r| Some(r.text1.clone())).collect(),
        )
        .str("text2", rows.iter().map(|r| r.text2.clone()).collect())
        .str("text3", rows.iter().map(|r| r.text3.clone()).collect())
        .str(
            "syn_text",
            rows.iter().map(|r| r.syn_text.clone()).collect(),
        )
        .write(path)
}

/// The rows of a released RealSyn parquet, in order; a row without a URL or text1
/// is passed to `skip` with its reason and left out. Extra columns are ignored.
pub fn read_released(
    path: &Path,
    mut skip: impl FnMut(usize, &'static str),
) -> Result<Vec<ReleasedRow>> {
    // The `parquet` crate asserts on some corrupt pages instead of returning an error
    // (found by fuzzing the OBELICS reader): a corrupt file is an error, not a crash.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_released_unguarded(path, &mut skip)
    }))
    .unwrap_or_else(|_| {
        bail!(
            "{} is a corrupt parquet file (the parquet decoder panicked on it)",
            path.display()
        )
    })
}

fn read_released_unguarded(
    path: &Path,
    skip: &mut dyn FnMut(usize, &'static str),
) -> Result<Vec<ReleasedRow>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{} is not a parquet file", path.display()))?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
    for need in ["raw_image_url", "text1"] {
        if !names.contains(&need) {
            bail!(
                "{} has no {need} column (columns: {}); the released RealSyn parquet has {}",
                path.display(),
                names.join(", "),
                RELEASED_COLUMNS.join(", ")
            );
        }
    }
    let mut out = Vec::new();
    for (i, row) in reader
        .get_row_iter(None)
        .with_context(|| format!("reading {}", path.display()))?
        .enumerate()
    {
        let row = match row {
            Ok(r) => r,
            // After a decoding error the row iterator may keep returning errors
            // forever (found by fuzzing: an 8 KB file spun at 100% CPU): the rest of
            // the file is unreadable, so stop.
            Err(_) => {
                skip(
                    i,
                    "unreadable parquet row (the rest of the file is skipped)",
                );
                break;
            }
        };
        let mut r = ReleasedRow::default();
        for (name, field) in row.get_column_iter() {
            let text = match field {
                Field::Str(s) => Some(s.clone()),
                _ => None,
            };
            match name.as_str() {
                "raw_image_url" => r.raw_image_url = text.unwrap_or_default(),
                "text1" => r.text1 = text.unwrap_or_default(),
                "text2" => r.text2 = text,
                "text3" => r.text3 = text,
                "syn_text" => r.syn_text = text,
                _ => {}
            }
        }
        if r.raw_image_url.trim().is_empty() {
            skip(i, "no raw_image_url");
        } else if r.text1.trim().is_empty() {
            skip(i, "no text1");
        } else {
            out.push(r);
        }
    }
    Ok(out)
}

/// The named columns of every row as text (`None`: null or absent), e.g. to read
/// back a shard's metadata.
pub fn read_columns(path: &Path, names: &[&str]) -> Result<Vec<Vec<Option<String>>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{} is not a parquet file", path.display()))?;
    let mut out = Vec::new();
    for row in reader.get_row_iter(None)? {
        let row = row.with_context(|| format!("reading {}", path.display()))?;
        let mut values = vec![None; names.len()];
        for (name, field) in row.get_column_iter() {
            if let Some(i) = names.iter().position(|n| n == name) {
                values[i] = match field {
                    Field::Null => None,
                    Field::Str(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                };
            }
        }
        out.push(values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_rows_round_trip_and_bad_rows_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.parquet");
        let rows = vec![
            ReleasedRow {
                raw_image_url: "http://x/a.jpg".into(),
                text1: "a dog".into(),
                text2: Some("a cat".into()),
                text3: None,
                syn_text: Some("a dog and a cat".into()),
            },
            ReleasedRow {
                raw_image_url: "".into(),
                text1: "no url".into(),
                ..Default::default()
            },
        ];
        write_released(&p, &rows).unwrap();
        let mut skipped = Vec::new();
        let back = read_released(&p, |i, r| skipped.push((i, r))).unwrap();
        assert_eq!(back, rows[..1]);
        assert_eq!(skipped, [(1, "no raw_image_url")]);
    }
}
