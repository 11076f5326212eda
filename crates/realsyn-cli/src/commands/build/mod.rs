//! `realsyn build`: the builder's stages (crate `realsyn-builder`); the models they
//! run are loaded in `models`.

mod models;

use std::path::PathBuf;

use anyhow::Result;
use models::{Runtime, with_models};
use realsyn_builder::ShardSpec;
use realsyn_builder::ingest::Format;
use realsyn_builder::perplexity::{MAX_PERPLEXITY, MIN_PERPLEXITY, PerplexityRange};
use realsyn_builder::stages::pipeline::{
    FetchSettings, Manifest, PerplexitySettings, SemanticSettings, report, run_all, run_extract,
    write_store_funnel,
};
use realsyn_builder::stages::{dedup_images, dedup_text, dedup_text_semantic, filter_text};

/// Build the image store and sentence store from interleaved documents (paper 3.1).
///
/// Stages, in order: extract -> filter-text (entropy; GPT-2 perplexity with --gpt2)
/// -> dedup-text [-> dedup-text-semantic with --text-encoder], and dedup-images
/// (semantic too with --image-encoder). Each writes STORE/STAGE/part-i-of-N/
/// atomically and skips parts already done, so a killed run resumes where it
/// stopped; `--shard i/N` runs one part (fan it out on a cluster, then run the next
/// stage). `all` runs everything in one process. Models run on --device cpu or cuda.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    stage: Stage,
}

#[derive(clap::Args, Clone)]
struct Source {
    /// Input files or folders (searched recursively), e.g. /usr/share/gimp/2.0/help/en.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// html (local pages, <img> resolved), mmc4 (JSONL with text_list + image_info),
    /// obelics (parquet with images, texts, metadata, general_metadata) or mediawiki
    /// (XML dump, .xml or .xml.bz2; text only).
    #[arg(long, default_value = "html")]
    format: String,
}

#[derive(clap::Args, Clone)]
struct StoreArg {
    /// The store directory (created).
    #[arg(long)]
    store: PathBuf,
}

#[derive(clap::Subcommand)]
enum Stage {
    /// Every stage, every part, then the funnel table.
    All {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        store: StoreArg,
        /// Parts to split the input into.
        #[arg(long, default_value_t = 1)]
        parts: usize,
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Documents -> images (size/aspect, phash, tar shards) and sentences (Punkt,
    /// emoji/URL, 3-81 words, CAT complexity + action), plus word counts.
    Extract {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        store: StoreArg,
        /// The part to run, i/N (default: all parts one after another).
        #[arg(long)]
        shard: Option<ShardSpec>,
        #[arg(long)]
        parts: Option<usize>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Entropy filter with corpus-wide word probabilities (needs every extract part),
    /// then GPT-2 perplexity when the store was started with --gpt2.
    FilterText {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        shard: Option<ShardSpec>,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Near-exact sentence dedup; part i keeps the keys with hash % N == i.
    DedupText {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        shard: Option<ShardSpec>,
    },
    /// Semantic sentence dedup over the whole corpus (union-find over text-embedding
    /// links); runs when the store was started with --text-encoder.
    DedupTextSemantic {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Perceptual (and, with --image-encoder at extract/all, semantic) image dedup
    /// over the whole corpus (union-find).
    DedupImages {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Print the funnel of everything finished so far (and write funnel.json/.md).
    Funnel {
        #[command(flatten)]
        store: StoreArg,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Clone)]
struct Settings {
    /// Minimum sentence entropy (paper Eq. 1).
    #[arg(long, default_value_t = filter_text::DEFAULT_MIN_ENTROPY)]
    min_entropy: f64,
    /// Perceptual-hash Hamming distance that links two images as duplicates.
    #[arg(long, default_value_t = dedup_images::DEFAULT_MAX_HAMMING)]
    max_hamming: u32,
    /// Images per tar shard of the image store.
    #[arg(long, default_value_t = 10_000)]
    images_per_tar: usize,
    /// Leave URL images out instead of downloading them.
    #[arg(long)]
    no_fetch: bool,
    /// Download timeout per request (connect and whole response), seconds.
    #[arg(long, default_value_t = 10.0)]
    fetch_timeout: f64,
    /// Retries of a download after a timeout, connection error, 429 or 5xx
    /// (exponential backoff from 0.5 s).
    #[arg(long, default_value_t = 2)]
    fetch_retries: u32,
    /// Largest image downloaded, bytes.
    #[arg(long, default_value_t = 20 << 20)]
    fetch_max_bytes: u64,
    /// Concurrent downloads.
    #[arg(long, default_value_t = 32)]
    fetch_threads: usize,
    /// WordNet folder (Debian wordnet-base) for the CAT complexity + action filter.
    #[arg(long, default_value = realsyn_builder::cat::WORDNET_DIR)]
    wordnet: PathBuf,
    /// Skip the CAT filter.
    #[arg(long)]
    no_cat: bool,
    /// GPT-2 for the perplexity filter: a Hugging Face GPT-2 snapshot (folder with
    /// model.safetensors or pytorch_model.bin and config.json; the paper uses
    /// gpt2-large). Without it the perplexity filter is skipped.
    #[arg(long)]
    gpt2: Option<PathBuf>,
    /// Lowest perplexity kept.
    #[arg(long, default_value_t = MIN_PERPLEXITY)]
    min_perplexity: f64,
    /// Highest perplexity kept.
    #[arg(long, default_value_t = MAX_PERPLEXITY)]
    max_perplexity: f64,
    #[command(flatten)]
    encoder: EncoderArgs,
}

#[derive(clap::Args, Clone)]
struct EncoderArgs {
    /// Semantic image dedup with this encoder: CLIP weights (open_clip .safetensors /
    /// .pt, a Hugging Face CLIP folder, a realsyn checkpoint) or `color-histogram`
    /// (a model-free baseline). Without it only perceptual dedup runs.
    #[arg(long)]
    image_encoder: Option<String>,
    /// Embedding cosine at which two images are duplicates.
    #[arg(long, default_value_t = dedup_images::DEFAULT_SEMANTIC_THRESHOLD)]
    semantic_threshold: f32,
    /// Semantic sentence dedup with this encoder: CLIP weights (its text tower; the
    /// same file as --image-encoder loads once) or `bag-of-words` (a model-free
    /// baseline that links reorderings). Without it only near-exact dedup runs.
    #[arg(long)]
    text_encoder: Option<String>,
    /// Embedding cosine at which two sentences are duplicates.
    #[arg(long, default_value_t = dedup_text_semantic::DEFAULT_TEXT_SEMANTIC_THRESHOLD)]
    text_semantic_threshold: f32,
}

fn manifest(source: &Source, parts: usize, s: &Settings) -> Result<Manifest> {
    Ok(Manifest {
        format: source.format.parse::<Format>()?,
        inputs: source
            .input
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect(),
        parts,
        min_entropy: s.min_entropy,
        max_hamming: s.max_hamming,
        images_per_tar: s.images_per_tar,
        fetch: (!s.no_fetch).then(|| FetchSettings {
            timeout_secs: s.fetch_timeout,
            retries: s.fetch_retries,
            max_bytes: s.fetch_max_bytes,
            threads: s.fetch_threads,
        }),
        cat_wordnet: (!s.no_cat).then(|| s.wordnet.clone()),
        semantic: s.encoder.image_encoder.as_ref().map(|e| SemanticSettings {
            encoder: e.clone(),
            threshold: s.encoder.semantic_threshold,
        }),
        text_semantic: s.encoder.text_encoder.as_ref().map(|e| SemanticSettings {
            encoder: e.clone(),
            threshold: s.encoder.text_semantic_threshold,
        }),
        perplexity: s.gpt2.as_ref().map(|model| PerplexitySettings {
            model: std::fs::canonicalize(model).unwrap_or_else(|_| model.clone()),
            range: PerplexityRange {
                min: s.min_perplexity,
                max: s.max_perplexity,
            },
        }),
    })
}

fn shards(shard: Option<ShardSpec>, parts: usize) -> Vec<ShardSpec> {
    match shard {
        Some(s) => vec![s],
        None => ShardSpec::all(parts).collect(),
    }
}

pub fn run(args: Args) -> Result<()> {
    match args.stage {
        Stage::All {
            source,
            store,
            parts,
            settings,
            runtime,
        } => {
            let m = manifest(&source, parts, &settings)?;
            // Pin first: a clash with an existing store is reported before models load.
            m.pin(&store.store)?;
            let funnel = with_models(&m, &runtime, |models| run_all(&store.store, &m, models))?;
            println!("{}", funnel.table());
            let skipped: Vec<&str> = [
                (m.cat_wordnet.is_none(), "CAT filter (--no-cat)"),
                (
                    m.perplexity.is_none(),
                    "GPT-2 perplexity filter (no --gpt2)",
                ),
                (
                    m.text_semantic.is_none(),
                    "semantic sentence dedup (no --text-encoder)",
                ),
                (
                    m.semantic.is_none(),
                    "semantic image dedup (no --image-encoder)",
                ),
            ]
            .into_iter()
            .filter_map(|(skip, what)| skip.then_some(what))
            .collect();
            if !skipped.is_empty() {
                eprintln!("paper steps not run: {}", skipped.join(", "));
            }
            eprintln!(
                "store: {} (funnel.json, funnel.md beside it)",
                store.store.display()
            );
        }
        Stage::Extract {
            source,
            store,
            shard,
            parts,
            settings,
        } => {
            let n = shard.map(|s| s.count).or(parts).unwrap_or(1);
            let m = manifest(&source, n, &settings)?;
            run_extract(&store.store, &m, shards(shard, n))?;
        }
        Stage::FilterText {
            store,
            shard,
            runtime,
        } => {
            let m = Manifest::read(&store.store)?;
            let counts = filter_text::corpus_counts(&store.store)?;
            // Only the language model is needed here.
            let text_only = Manifest {
                semantic: None,
                text_semantic: None,
                ..m.clone()
            };
            with_models(&text_only, &runtime, |mut models| {
                for s in shards(shard, m.parts) {
                    let ppl = models.perplexity_filter(&m)?;
                    let ran = filter_text::run(&store.store, s, &counts, m.min_entropy, ppl)?;
                    report("filter-text", s, ran.is_some());
                }
                Ok(())
            })?;
        }
        Stage::DedupText { store, shard } => {
            let m = Manifest::read(&store.store)?;
            for s in shards(shard, m.parts) {
                report("dedup-text", s, dedup_text::run(&store.store, s)?.is_some());
            }
        }
        Stage::DedupTextSemantic { store, runtime } => {
            let m = Manifest::read(&store.store)?;
            if m.text_semantic.is_none() {
                anyhow::bail!(
                    "{} was started without --text-encoder: there is no semantic sentence dedup to run",
                    store.store.display()
                );
            }
            let text_only = Manifest {
                semantic: None,
                perplexity: None,
                ..m.clone()
            };
            let ran = with_models(&text_only, &runtime, |mut models| {
                let semantic = models.text_semantic(&m)?.expect("checked above");
                dedup_text_semantic::run(&store.store, semantic)
            })?;
            report("dedup-text-semantic", ShardSpec::default(), ran.is_some());
        }
        Stage::DedupImages { store, runtime } => {
            let m = Manifest::read(&store.store)?;
            // Only the image encoder is needed here.
            let image_only = Manifest {
                perplexity: None,
                text_semantic: None,
                ..m.clone()
            };
            let ran = with_models(&image_only, &runtime, |models| {
                let semantic = models.image.zip(m.semantic.as_ref()).map(|(embedder, s)| {
                    dedup_images::Semantic {
                        embedder,
                        threshold: s.threshold,
                    }
                });
                dedup_images::run(&store.store, m.max_hamming, semantic)
            })?;
            report("dedup-images", ShardSpec::default(), ran.is_some());
        }
        Stage::Funnel { store, json } => {
            let f = write_store_funnel(&store.store)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                println!("{}", f.table());
            }
        }
    }
    Ok(())
}
