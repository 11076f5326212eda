//! # realsyn
//!
//! The command-line front end. Each subcommand lives in `commands/` and only parses
//! arguments, calls the library crates (`realsyn-builder`, `realsyn-train`,
//! `realsyn-eval`, ...) through `realsyn-runtime` (devices, model loading, encoders)
//! and prints.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "realsyn",
    version,
    about = "RealSyn: build CLIP training data from interleaved image-text documents, train CLIP, evaluate it.",
    long_about = "RealSyn: turn interleaved image-text documents into CLIP training data, train CLIP \
                  (ViT-B/32, B/16, L/14) on it and evaluate it.\n\nModel weights are read from open_clip \
                  (.safetensors, .pt/.bin), Hugging Face CLIPModel directories and realsyn checkpoints; \
                  see `realsyn convert --help`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Build(commands::build::Args),
    Tokenize(commands::tokenize::Args),
    Embed(commands::embed::Args),
    Convert(commands::convert::Args),
    Init(commands::init::Args),
    Bench(commands::bench::Args),
    Train(commands::train::Args),
    Eval(commands::eval::Args),
    Dataset(commands::dataset::Args),
    Scaling(commands::scaling::Args),
    Llm(commands::llm::Args),
    Run(commands::run::Args),
    View(commands::view::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(a) => commands::build::run(a),
        Command::Tokenize(a) => commands::tokenize::run(a),
        Command::Embed(a) => commands::embed::run(a),
        Command::Convert(a) => commands::convert::run(a),
        Command::Init(a) => commands::init::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Dataset(a) => commands::dataset::run(a),
        Command::Scaling(a) => commands::scaling::run(a),
        Command::Llm(a) => commands::llm::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::View(a) => commands::view::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
