//! `realsyn tokenize`: texts -> CLIP token ids.

use std::path::PathBuf;

use anyhow::{Context, Result};
use realsyn_io::npy::write_npy;
use realsyn_model::ClipTokenizer;

/// Tokenize one text per line into an int32 [N, context_length] .npy, with exactly
/// the ids open_clip's tokenizer gives (start 49406, end 49407, zero padding, EOT
/// forced into the last slot of over-long texts).
#[derive(clap::Args)]
pub struct Args {
    /// UTF-8 text file, one text per line.
    #[arg(long)]
    input: PathBuf,
    /// Output .npy (int32 [N, context_length]).
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 77)]
    context_length: usize,
}

pub fn run(args: Args) -> Result<()> {
    let texts = read_lines(&args.input)?;
    let tok = ClipTokenizer::new().with_context_length(args.context_length)?;
    let start = std::time::Instant::now();
    let rows = tok.tokenize_batch(&texts);
    let flat: Vec<i32> = rows.into_iter().flatten().collect();
    write_npy(&args.output, &flat, &[texts.len(), args.context_length])?;
    eprintln!(
        "tokenized {} texts in {:.2}s -> {}",
        texts.len(),
        start.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(())
}

/// Lines of a UTF-8 file; invalid UTF-8 is reported with its line number.
pub fn read_lines(path: &PathBuf) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line)
            .with_context(|| format!("{}:{}: not valid UTF-8", path.display(), i + 1))?;
        lines.push(text.to_string());
    }
    if bytes.ends_with(b"\n") {
        lines.pop();
    }
    Ok(lines)
}
