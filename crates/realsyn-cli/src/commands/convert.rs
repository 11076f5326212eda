//! `realsyn convert`: between open_clip, Hugging Face and realsyn weight formats (and
//! from the EVA-CLIP release's layout).

use std::path::PathBuf;

use anyhow::{Result, bail};
use realsyn_model::clip::weights::{WeightFormat, read_weights, resolve_config, write_weights};

/// Convert CLIP and EVA02-CLIP weights between formats.
///
/// Reads open_clip (.safetensors, .pt/.pth/.bin, also training checkpoints; CLIP ViT
/// and EVA02-CLIP `visual.trunk.*`), Hugging Face CLIPModel (a directory or
/// model.safetensors beside config.json), the EVA-CLIP release's checkpoints
/// (BAAI `EVA02_CLIP_*`, `visual.blocks.*`) and realsyn checkpoints; f16/bf16 files
/// are read as f32. Writes open_clip safetensors (loadable with
/// `open_clip.create_model(name, pretrained=FILE)`), a Hugging Face directory
/// (model.safetensors + config.json) or a realsyn checkpoint (open_clip safetensors
/// with the model config embedded).
#[derive(clap::Args)]
pub struct Args {
    /// Weights to read (file, or Hugging Face model directory).
    #[arg(long)]
    input: PathBuf,
    /// Where to write (a directory for --to hf).
    #[arg(long)]
    output: PathBuf,
    /// Output format: open_clip, hf or realsyn (EVA02 has no hf layout). Default: from
    /// the output name (a path without extension means hf, *.safetensors means realsyn).
    #[arg(long)]
    to: Option<WeightFormat>,
    /// Architecture (ViT-B-32, EVA02-B-16, ... or an open_clip config JSON) when the
    /// input does not carry one; otherwise it is read from the file or inferred from
    /// tensor shapes.
    #[arg(long)]
    arch: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let loaded = read_weights(&args.input)?;
    let config = resolve_config(&loaded, args.arch.as_deref())?;
    let to = match args.to {
        Some(f) => f,
        None if args.output.extension().is_none() => WeightFormat::HuggingFace,
        None => WeightFormat::Realsyn,
    };
    if to != WeightFormat::HuggingFace && args.output.extension().is_none_or(|e| e != "safetensors")
    {
        bail!(
            "{}: open_clip / realsyn weights are written as .safetensors",
            args.output.display()
        );
    }
    // Loading into the model checks every tensor's shape against the config.
    let model = realsyn_model::Clip::<realsyn_model::backend::Cpu>::from_open_clip(
        &config,
        loaded.state_dict,
        &Default::default(),
    )?;
    write_weights(&args.output, &model.to_open_clip()?, &config, to)?;
    eprintln!("{:?} -> {:?}: {}", loaded.format, to, args.output.display());
    Ok(())
}
