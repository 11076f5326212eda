//! `realsyn init`: a randomly initialised model, the starting point of training
//! from scratch (open_clip's initialisation scheme).

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;
use realsyn_model::backend::Cpu;
use realsyn_model::clip::weights::{WeightFormat, write_weights};
use realsyn_model::{Clip, ClipConfig};

/// Write a randomly initialised CLIP as a realsyn checkpoint (or open_clip safetensors).
#[derive(clap::Args)]
pub struct Args {
    /// Architecture: ViT-B-32, ViT-B-16, ViT-L-14, EVA02-B-16, ... or an open_clip config JSON.
    #[arg(long)]
    arch: String,
    /// Output .safetensors.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// realsyn (config embedded) or open_clip.
    #[arg(long, default_value = "realsyn")]
    format: WeightFormat,
}

pub fn run(args: Args) -> Result<()> {
    let config = ClipConfig::from_name_or_path(&args.arch)?;
    let device = Default::default();
    Cpu::seed(&device, args.seed);
    let model = Clip::<Cpu>::new(&config, &device);
    write_weights(&args.output, &model.to_open_clip()?, &config, args.format)?;
    eprintln!(
        "wrote randomly initialised {} to {}",
        args.arch,
        args.output.display()
    );
    Ok(())
}
