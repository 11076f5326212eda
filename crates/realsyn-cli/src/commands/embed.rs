//! `realsyn embed`: images or texts -> CLIP embeddings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use rayon::prelude::*;
use realsyn_data::npy::write_npy;
use realsyn_data::{EvalTransform, load_image};
use realsyn_model::batch::{image_batch, to_rows, token_batch};
use realsyn_model::{Clip, ClipTokenizer, l2_normalize};

use crate::device::{BackendJob, dispatch};
use realsyn_data::progress::bar;

/// Embed images or texts with a CLIP model into a float32 [N, D] .npy.
///
/// Rows follow sorted file-name order (images) or line order (texts). Features are
/// unnormalised by default, like open_clip's encode_image / encode_text. Images go
/// through CLIP's eval transform (bicubic resize of the shorter side, centre crop,
/// OpenAI mean/std). A file that cannot be decoded is reported by name and skipped;
/// for images, OUTPUT.files.txt lists the file behind each row.
#[derive(clap::Args, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["images", "texts"])))]
pub struct Args {
    /// Architecture (ViT-B-32, ViT-B-16, ViT-L-14, ... or an open_clip config JSON).
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
    let (rows, dim, names) = dispatch(&device, EmbedJob(args.clone()))?;
    let n = rows.len() / dim.max(1);
    write_npy(&args.output, &rows, &[n, dim])?;
    if let Some(names) = names {
        let list = args.output.with_extension("files.txt");
        realsyn_data::fs::write_atomic(&list, (names.join("\n") + "\n").as_bytes())?;
    }
    eprintln!("wrote {n} x {dim} embeddings to {}", args.output.display());
    Ok(())
}

struct EmbedJob(Args);

impl BackendJob for EmbedJob {
    /// (row-major features, dim, image file names)
    type Output = (Vec<f32>, usize, Option<Vec<String>>);

    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output> {
        let args = self.0;
        let model = Clip::<B>::load(&args.weights, args.arch.as_deref(), &device)?;
        let finish =
            |t: burn::tensor::Tensor<B, 2>| if args.normalize { l2_normalize(t) } else { t };
        let mut out = Vec::new();
        let mut dim = model.config.embed_dim;
        if let Some(dir) = &args.images {
            let files = list_images(dir)?;
            let size = model.config.vision_cfg.image_size;
            let transform = EvalTransform::new(size as u32);
            let pb = bar(files.len() as u64, "images");
            let mut kept = Vec::new();
            for chunk in files.chunks(args.batch_size) {
                let decoded: Vec<(String, Result<Vec<f32>>)> = chunk
                    .par_iter()
                    .map(|p| {
                        (
                            file_name(p),
                            load_image(p).and_then(|img| transform.apply(&img)),
                        )
                    })
                    .collect();
                let mut batch = Vec::new();
                for (name, result) in decoded {
                    match result {
                        Ok(chw) => {
                            batch.push(chw);
                            kept.push(name);
                        }
                        Err(e) => pb.suspend(|| eprintln!("skipping {name}: {e:#}")),
                    }
                }
                if !batch.is_empty() {
                    let (rows, [_, d]) = to_rows(finish(
                        model.encode_image(image_batch::<B>(&batch, size, &device)),
                    ));
                    dim = d;
                    out.extend(rows);
                }
                pb.inc(chunk.len() as u64);
            }
            pb.finish_and_clear();
            let skipped = files.len() - kept.len();
            if skipped > 0 {
                eprintln!(
                    "{skipped} of {} images could not be read and were skipped",
                    files.len()
                );
            }
            return Ok((out, dim, Some(kept)));
        }
        let texts_path = args
            .texts
            .as_ref()
            .expect("clap requires --images or --texts");
        let texts = super::tokenize::read_lines(texts_path)?;
        let tok = ClipTokenizer::for_text_tower(&model.config.text_cfg)?;
        let pb = bar(texts.len() as u64, "texts");
        for chunk in texts.chunks(args.batch_size) {
            let tokens = token_batch::<B>(&tok.tokenize_batch(chunk), &device);
            let (rows, [_, d]) = to_rows(finish(model.encode_text(tokens)));
            dim = d;
            out.extend(rows);
            pb.inc(chunk.len() as u64);
        }
        pb.finish_and_clear();
        Ok((out, dim, None))
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
