//! `realsyn embed`: images or texts -> CLIP embeddings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use rayon::prelude::*;
use realsyn_data::load_image;
use realsyn_data::progress::bar;
use realsyn_io::{Embeddings, encode_in_batches};
use realsyn_model::encoder::{embed_pixels, embed_texts};
use realsyn_runtime::{BackendJob, create_model_and_transforms, dispatch};

/// Embed images or texts with a CLIP model into a float32 [N, D] .npy.
///
/// Rows follow sorted file-name order (images) or line order (texts). Features are
/// unnormalised by default, like open_clip's encode_image / encode_text. Images go
/// through CLIP's eval transform (bicubic resize of the shorter side, centre crop,
/// OpenAI mean/std). A file that cannot be decoded is reported by name and skipped;
/// for images, a list of the file behind each row is written beside the output, its
/// extension replaced by `.files.txt` (img.npy -> img.files.txt), and the skipped
/// files with their reasons as JSON lines in `.skips.jsonl` (img.skips.jsonl).
#[derive(clap::Args, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["images", "texts"])))]
pub struct Args {
    /// Architecture (ViT-B-32, ViT-B-16, ViT-L-14, EVA02-B-16, EVA02-E-14-plus, ... or an
    /// open_clip config JSON).
    /// Optional when the weights carry their config (realsyn checkpoints, HF dirs).
    #[arg(long)]
    arch: Option<String>,
    /// Weights: open_clip .safetensors/.pt/.bin, HF directory or realsyn checkpoint.
    #[arg(long)]
    weights: PathBuf,
    /// Directory of images (jpg, png, webp, ...).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Text file, one text per line.
    #[arg(long)]
    texts: Option<PathBuf>,
    /// Output .npy (float32 [N, embed_dim]).
    #[arg(long)]
    output: PathBuf,
    /// L2-normalise each row.
    #[arg(long)]
    normalize: bool,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// cpu (Burn flex), or cuda[:N] in a build with --features cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: Args) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let device = args.device.clone();
    let (emb, rows) = dispatch(&device, EmbedJob(args.clone()))?;
    emb.write_npy(&args.output)?;
    if let Some(ImageRows { kept, skipped }) = rows {
        let list = args.output.with_extension("files.txt");
        realsyn_io::fs::write_atomic(&list, (kept.join("\n") + "\n").as_bytes())?;
        let mut lines = String::new();
        for (file, reason) in skipped {
            let line = serde_json::json!({ "what": file, "reason": reason });
            lines.push_str(&format!("{line}\n"));
        }
        realsyn_io::fs::write_atomic(&args.output.with_extension("skips.jsonl"), lines.as_bytes())?;
    }
    eprintln!(
        "wrote {} x {} embeddings to {}",
        emb.rows(),
        emb.width(),
        args.output.display()
    );
    Ok(())
}

struct EmbedJob(Args);

/// For images: the file behind each row, and each file skipped with its reason.
struct ImageRows {
    kept: Vec<String>,
    skipped: Vec<(String, String)>,
}

impl BackendJob for EmbedJob {
    type Output = (Embeddings, Option<ImageRows>);

    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output> {
        let args = self.0;
        let loaded =
            create_model_and_transforms::<B>(&args.weights, args.arch.as_deref(), &device)?;
        let model = &loaded.model;
        let (emb, names) = if let Some(dir) = &args.images {
            let files = list_images(dir)?;
            let transform = loaded.eval_transform;
            let pb = bar(files.len() as u64, "images");
            // Decoded in parallel a batch of files at a time; unreadable files are
            // reported by name and left out.
            let mut kept = Vec::new();
            let mut skipped = Vec::new();
            let pixels = files.chunks(args.batch_size).flat_map(|chunk| {
                let decoded: Vec<(String, Result<Vec<f32>>)> = chunk
                    .par_iter()
                    .map(|p| {
                        (
                            file_name(p),
                            load_image(p).and_then(|img| transform.apply(&img)),
                        )
                    })
                    .collect();
                pb.inc(chunk.len() as u64);
                let mut ok = Vec::with_capacity(decoded.len());
                for (name, result) in decoded {
                    match result {
                        Ok(chw) => ok.push((name, chw)),
                        Err(e) => {
                            pb.suspend(|| eprintln!("skipping {name}: {e:#}"));
                            skipped.push((name, format!("{e:#}")));
                        }
                    }
                }
                ok
            });
            let emb = encode_in_batches(
                pixels.map(|(name, chw)| {
                    kept.push(name);
                    Ok(chw)
                }),
                args.batch_size,
                |batch| embed_pixels(model, batch, args.normalize, &device),
                |_| {},
            )?;
            pb.finish_and_clear();
            if kept.is_empty() {
                bail!(
                    "none of the {} files could be read as an image (reasons above): nothing to embed",
                    files.len()
                );
            }
            if !skipped.is_empty() {
                eprintln!(
                    "{} of {} images could not be read and were skipped",
                    skipped.len(),
                    files.len()
                );
            }
            (emb, Some(ImageRows { kept, skipped }))
        } else {
            let texts_path = args
                .texts
                .as_ref()
                .expect("clap requires --images or --texts");
            let texts = super::tokenize::read_lines(texts_path)?;
            let tok = loaded.tokenizer()?;
            let pb = bar(texts.len() as u64, "texts");
            let emb = encode_in_batches(
                texts.iter().map(|t| Ok(t.as_str())),
                args.batch_size,
                |batch| embed_texts(model, &tok, batch, args.normalize, &device),
                |n| pb.inc(n as u64),
            )?;
            pb.finish_and_clear();
            (emb, None)
        };
        // No row at all still writes the model's width.
        let emb = if emb.is_empty() {
            Embeddings::empty(model.config.embed_dim)
        } else {
            emb
        };
        Ok((emb, names))
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Regular, non-hidden files of `dir`, sorted by name.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading image directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !file_name(p).starts_with('.'))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} contains no files", dir.display());
    }
    Ok(files)
}
