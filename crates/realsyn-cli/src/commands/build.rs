//! `realsyn build`: the builder's stages (crate `realsyn-builder`).

use std::path::PathBuf;

use anyhow::Result;
use realsyn_builder::ShardSpec;
use realsyn_builder::ingest::{Format, Input};
use realsyn_builder::stages::pipeline::{FetchSettings, Manifest, run_all, write_store_funnel};
use realsyn_builder::stages::{dedup_images, dedup_text, extract, filter_text};

/// Build the image store and sentence store from interleaved documents (paper 3.1).
///
/// Stages, in order: extract -> filter-text -> dedup-text, and dedup-images. Each
/// writes STORE/STAGE/part-i-of-N/ atomically and skips parts already done, so a
/// killed run resumes where it stopped; `--shard i/N` runs one part (fan it out on
/// a cluster, then run the next stage). `all` runs everything in one process.
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
    /// html (local pages, <img> resolved), mmc4 (JSONL with text_list + image_info) or
    /// obelics (parquet with images, texts, metadata, general_metadata).
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
    },
    /// Documents -> images (size/aspect, phash, tar shards) and sentences (Punkt,
    /// emoji/URL, 3-81 words), plus word counts.
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
    /// Entropy filter with corpus-wide word probabilities (needs every extract part).
    FilterText {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        shard: Option<ShardSpec>,
    },
    /// Near-exact sentence dedup; part i keeps the keys with hash % N == i.
    DedupText {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        shard: Option<ShardSpec>,
    },
    /// Perceptual image dedup over the whole corpus (union-find).
    DedupImages {
        #[command(flatten)]
        store: StoreArg,
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
        } => {
            let m = manifest(&source, parts, &settings)?;
            let funnel = run_all(&store.store, &m)?;
            println!("{}", funnel.table());
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
            m.pin(&store.store)?;
            let input = Input::list(m.format, &m.inputs)?;
            for s in shards(shard, n) {
                let opts = extract::ExtractOptions {
                    store: store.store.clone(),
                    shard: s,
                    images_per_tar: m.images_per_tar,
                    fetch: m.fetch.as_ref().map(FetchSettings::options),
                };
                done("extract", s, extract::run(&input, &opts)?.is_some());
            }
        }
        Stage::FilterText { store, shard } => {
            let m = Manifest::read(&store.store)?;
            let counts = filter_text::corpus_counts(&store.store)?;
            for s in shards(shard, m.parts) {
                done(
                    "filter-text",
                    s,
                    filter_text::run(&store.store, s, &counts, m.min_entropy)?.is_some(),
                );
            }
        }
        Stage::DedupText { store, shard } => {
            let m = Manifest::read(&store.store)?;
            for s in shards(shard, m.parts) {
                done("dedup-text", s, dedup_text::run(&store.store, s)?.is_some());
            }
        }
        Stage::DedupImages { store } => {
            let m = Manifest::read(&store.store)?;
            done(
                "dedup-images",
                ShardSpec::default(),
                dedup_images::run(&store.store, m.max_hamming)?.is_some(),
            );
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

fn done(stage: &str, shard: ShardSpec, ran: bool) {
    if ran {
        eprintln!("{stage} {shard}: done");
    } else {
        eprintln!("{stage} {shard}: already complete, skipped");
    }
}
