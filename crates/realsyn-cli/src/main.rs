//! # realsyn
//!
//! The command-line front end. Each subcommand lives in `commands/` and only parses
//! arguments, calls the library crates (`realsyn-builder`, `realsyn-train`,
//! `realsyn-eval`, ...) through `realsyn-runtime` (devices, model loading, encoders)
//! and prints. Nothing depends on it; it must not hold model, data or builder logic.

mod commands;
mod memory;

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
    if matches!(
        cli.command,
        Command::Train(_)
            | Command::Bench(_)
            | Command::Eval(_)
            | Command::Run(_)
            | Command::Embed(_)
    ) {
        memory::keep_freed_memory();
    }
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// Every settings flag of `build all` is refused beside --recipe (a flag the
    /// recipe would silently shadow); only how to run (device, model options, the
    /// store, --set) goes with it.
    #[test]
    fn build_recipe_refuses_every_settings_flag() {
        let mut cmd = super::Cli::command();
        cmd.build();
        let all = cmd
            .find_subcommand("build")
            .and_then(|b| b.find_subcommand("all"))
            .unwrap();
        let runtime = [
            "store",
            "recipe",
            "set",
            "print_recipe",
            "device",
            "image_encoder_arch",
            "text_encoder_arch",
            "pair_encoder_arch",
            "gpt2_bpe",
            "gpt2_batch_tokens",
            "llm_concurrency",
            "llm_timeout",
            "llm_retries",
            "llm_api_key_env",
            "llm_batch",
            "help",
        ];
        let mut checked = 0;
        for arg in all.get_arguments() {
            let id = arg.get_id().as_str();
            if runtime.contains(&id) {
                continue;
            }
            let flag = format!("--{}", arg.get_long().unwrap());
            let mut argv = vec![
                "realsyn", "build", "all", "--recipe", "r.toml", "--store", "s", &flag,
            ];
            let default = arg.get_default_values().first().and_then(|v| v.to_str());
            let value = match id {
                "dataset_variants" => "all",
                _ => default.unwrap_or("1"),
            };
            if arg.get_num_args().is_none_or(|n| n.takes_values()) {
                argv.push(value);
            }
            let err = super::Cli::try_parse_from(&argv).err();
            assert_eq!(
                err.map(|e| e.kind()),
                Some(clap::error::ErrorKind::ArgumentConflict),
                "{flag} is accepted beside --recipe"
            );
            checked += 1;
        }
        assert!(checked > 40, "{checked} settings flags");
    }
}
