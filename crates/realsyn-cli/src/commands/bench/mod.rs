//! `realsyn bench MODE`: one timed measurement per run, printed as one JSON line,
//! for docs/performance.md and the other docs' cost tables. Each mode is a
//! subcommand with its own options; its peer (PyTorch open_clip, faiss, PIL,
//! transformers, ...) runs beside it in the matching `benches/*.sh`, which prints the
//! ratio.
//!
//! - `model.rs`: CLIP encode-image / encode-text / train-step on random inputs, and
//!   the evaluator's feature extraction (`features`);
//! - `data.rs`: the training data pipeline;
//! - `builder.rs`: the builder's sentence path, image filter, semantic dedup,
//!   k-means and hierarchical retrieval;
//! - `language.rs`: GPT-2 perplexity, the embedded LLM, the GIT captioner;
//! - `linear_probe.rs`: one logistic-regression fit;
//! - `matmul.rs`: one square GEMM, the kernels' own rate;
//! - `collectives.rs`: the gradient all-reduce between ranks.

mod builder;
mod collectives;
mod data;
mod language;
mod linear_probe;
mod matmul;
mod model;

use anyhow::Result;

/// Time one part of realsyn on this machine. Each mode prints one JSON line; the
/// `benches/*.sh` scripts run it beside its peer and print the ratio.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
realsyn bench encode-image --arch ViT-B-32 --batch-size 32\n  \
realsyn bench train-step --arch ViT-B-16 --device cuda --precision amp_bf16\n  \
realsyn bench kmeans --features vectors.npy --k 1000 --iters 10\n  \
benches/model.sh   # encode-image and train-step beside PyTorch open_clip")]
pub struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Subcommand)]
enum Mode {
    /// CLIP's image tower on random images (inference, no autodiff).
    EncodeImage(model::ModelRun),
    /// CLIP's text tower on random caption-shaped tokens.
    EncodeText(model::ModelRun),
    /// The trainer's step (both towers, InfoNCE, backward, AdamW). Started as several
    /// processes by torchrun/Slurm variables it is the distributed step with
    /// --batch-size per rank, which times the all-gather and all-reduce too.
    TrainStep(model::TrainStep),
    /// The evaluator's feature extraction end to end: read a wds export's test split,
    /// decode, resize + centre crop, encode, normalise.
    Features(model::Features),
    /// One square matrix product (f32 or bf16): the GEMM kernels' own TFLOP/s.
    Matmul(matmul::Matmul),
    /// The trainer's gradient all-reduce alone, between the ranks that torchrun or
    /// Slurm variables describe (TCP ring on CPU, NCCL on GPUs): seconds and
    /// bandwidth (benches/all_reduce.sh runs torch.distributed beside it).
    AllReduce(collectives::AllReduce),
    /// The training data pipeline: shards -> decode -> RandomResizedCrop(224) ->
    /// normalised batches, one epoch on --workers threads.
    Data(data::Data),
    /// One logistic regression fit (scikit-learn's objective, L-BFGS).
    LinearProbe(linear_probe::LinearProbe),
    /// The builder's text path on one thread: Punkt, the emoji/URL/length rules, word
    /// counts and the entropy filter.
    Sentences(builder::Sentences),
    /// The extract stage's image filter on one thread: read, size from the header,
    /// the paper's size/aspect rule.
    ImageFilter(builder::ImageFilter),
    /// LSH + union-find on synthetic embeddings with 10% planted near-duplicates at
    /// cosine 0.97 (threshold 0.95); recall against brute force on 1,000 rows.
    SemanticDedup(builder::SemanticDedup),
    /// Spherical k-means: seconds per Lloyd iteration and the assignment's GFLOP/s.
    Kmeans(builder::Kmeans),
    /// Hierarchical retrieval against exact search on synthetic embeddings: recall of
    /// the exact top-3 and speed-up for 1, 2, 4 and 8 probed clusters.
    Retrieval(builder::Retrieval),
    /// GPT-2 perplexity of every line of a text file, length-sorted batches.
    Perplexity(language::Perplexity),
    /// The embedded LLM generating a fixed number of tokens per prompt.
    Llm(language::Llm),
    /// GIT captioning images from a Hugging Face snapshot.
    Caption(language::Caption),
}

pub fn run(args: Args) -> Result<()> {
    match args.mode {
        Mode::EncodeImage(r) => model::run(model::What::EncodeImage, r),
        Mode::EncodeText(r) => model::run(model::What::EncodeText, r),
        Mode::TrainStep(t) => model::run(model::What::TrainStep(t.plan()), t.run),
        Mode::Features(f) => model::run(
            model::What::Features {
                root: f.shards,
                max_images: f.max_images,
            },
            f.run,
        ),
        Mode::Matmul(a) => matmul::run(&a),
        Mode::AllReduce(a) => collectives::run(&a),
        Mode::Data(a) => data::run(&a),
        Mode::LinearProbe(a) => linear_probe::run(&a),
        Mode::Sentences(a) => builder::sentences(&a),
        Mode::ImageFilter(a) => builder::image_filter(&a),
        Mode::SemanticDedup(a) => builder::semantic_dedup(&a),
        Mode::Kmeans(a) => builder::kmeans(&a),
        Mode::Retrieval(a) => builder::retrieval(&a),
        Mode::Perplexity(a) => language::perplexity(a),
        Mode::Llm(a) => language::llm(&a),
        Mode::Caption(a) => language::caption(&a),
    }
}

/// The CubeCL kernel a `REALSYN_MATMUL` / `REALSYN_ATTENTION` variable names, `auto`
/// when unset (third_party/burn-cubecl/PATCHES.md), for a measurement's line.
fn kernel_choice(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "auto".into())
}

/// The median of run times (seconds).
fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}
