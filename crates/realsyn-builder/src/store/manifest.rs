//! The manifest that pins a store to its inputs and settings (so that a re-run
//! resumes the same build instead of mixing two), and the loaded models a run hands
//! its stages.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::embed::EncoderChoice;
use crate::extract::fetch::FetchOptions;
use crate::extract::ingest::Format;
use crate::filter::cat::CatFilter;
use crate::filter::perplexity::PerplexityRange;

/// The largest local image read when downloads are off (the download default).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 20 << 20;

/// A build's settings: the build recipe (`STORE/recipe.toml`, `--recipe`, `--set`;
/// see `build_recipe`) and the store's pin (`STORE/manifest.json`). Each stage reads
/// the keys its `Stage::settings` names. A key left out of a recipe takes the
/// default below; an optional section left out turns its step off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default = "default_format")]
    pub format: Format,
    #[serde(default)]
    pub inputs: Vec<PathBuf>,
    #[serde(default = "default_parts")]
    pub parts: usize,
    #[serde(default = "default_min_entropy")]
    pub min_entropy: f64,
    #[serde(default = "default_max_hamming")]
    pub max_hamming: u32,
    #[serde(default = "default_images_per_tar")]
    pub images_per_tar: usize,
    /// URL image downloads; `None` leaves URL images out.
    #[serde(default)]
    pub fetch: Option<FetchSettings>,
    /// Semantic image dedup; `None` runs the perceptual pass only.
    #[serde(default)]
    pub semantic: Option<SemanticSettings>,
    /// WordNet folder for the CAT filter; `None` skips the filter.
    #[serde(default)]
    pub cat_wordnet: Option<PathBuf>,
    /// GPT-2 perplexity filter; `None` skips it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<PerplexitySettings>,
    /// Semantic sentence dedup (`bag-of-words` or CLIP weights); `None` skips it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_semantic: Option<SemanticSettings>,
    /// Let documents name local image files outside the input folders.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub images_outside_input: bool,
    /// Text clustering and hierarchical retrieval (paper §3.2) with one dual
    /// encoder; `None` stops the build after deduplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing: Option<PairingSettings>,
    /// Image semantic augmented generation (paper §3.2): caption, tags, LLM merge;
    /// `None` stops the build after retrieval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationSettings>,
    /// Semantic balance sampling (paper §3.3); `None` writes every pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<BalanceSettings>,
    /// The dataset writer (WebDataset shards); `None` stops before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSettings>,
}

fn default_format() -> Format {
    Format::Html
}
fn default_parts() -> usize {
    1
}
fn default_min_entropy() -> f64 {
    crate::filter::text_filters::MIN_ENTROPY
}
fn default_max_hamming() -> u32 {
    crate::dedup::link::DEFAULT_MAX_HAMMING
}
fn default_images_per_tar() -> usize {
    10_000
}

/// Semantic balance sampling (paper §3.3): the cosine band and the image clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BalanceSettings {
    /// Which image-text cosines are kept (paper: 0.51..0.61 on EVA02-CLIP E/14-plus).
    pub band: crate::balance::Band,
    /// Samples per image cluster at most, one dataset variant each (paper: 20, 35,
    /// 180 for RealSyn15M, 30M, 100M).
    pub caps: Vec<usize>,
    /// Image clusters K; `None`: pairs / `pairs_per_cluster` (paper: 1M, 168 each).
    pub clusters: Option<usize>,
    pub pairs_per_cluster: usize,
    pub iterations: usize,
    pub kmeans_seed: u64,
    /// Seed of the per-cluster draws and of the random baseline.
    pub sample_seed: u64,
}

impl Default for BalanceSettings {
    fn default() -> Self {
        Self {
            band: crate::balance::Band::Cosine {
                low: 0.51,
                high: 0.61,
            },
            caps: Vec::new(),
            clusters: None,
            pairs_per_cluster: crate::balance::PAPER_PAIRS_PER_CLUSTER,
            iterations: 25,
            kmeans_seed: 1234,
            sample_seed: 0,
        }
    }
}

/// What the dataset writer writes (img2dataset's options where they exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetSettings {
    pub samples_per_shard: usize,
    /// The variants: balanced caps (default: every cap of the balance), `all`
    /// (every pair, the only one without a balance) and the random baselines.
    pub variants: Vec<crate::write::Variant>,
    /// Resize images (img2dataset's `--resize_mode`, `--image_size`); `None`
    /// keeps the original bytes (non-JPEG images are re-encoded to JPEG).
    pub resize: Option<crate::write::Resize>,
    /// JPEG quality of re-encoded images (img2dataset: 95).
    pub jpeg_quality: u8,
}

impl Default for DatasetSettings {
    fn default() -> Self {
        Self {
            samples_per_shard: 10_000,
            variants: Vec::new(),
            resize: None,
            jpeg_quality: 95,
        }
    }
}

/// Which language model merges the texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmChoice {
    /// realsyn's Llama in Burn over a GGUF file.
    Embedded { gguf: PathBuf },
    /// An OpenAI-compatible server (vLLM, llama.cpp, `realsyn llm serve`).
    Endpoint { base_url: String, model: String },
    /// Offline: requests written to `dir/requests.jsonl` as OpenAI Batch JSONL for
    /// `vllm run-batch`, answers read from `dir/results.jsonl`.
    Batch { dir: PathBuf, model: String },
}

/// Which model captions the images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptionerChoice {
    /// The image's alt text from its document (no model).
    AltText,
    /// A vision chat model behind an OpenAI-compatible server.
    Endpoint { base_url: String, model: String },
    /// GIT (`GitForCausalLM`, e.g. microsoft/git-base-coco) from a Hugging Face
    /// snapshot folder, run on the build's device: the stand-in for the paper's OFA.
    Git {
        snapshot: PathBuf,
        /// 1 = greedy.
        beams: usize,
        max_tokens: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TagSettings {
    /// Nouns mined from the kept sentences added to RAM's 4,585 tags (paper: 4,000).
    pub mined: usize,
    pub top_k: usize,
    /// Lowest CLIP cosine between image and tag kept.
    pub min_cosine: f32,
}

impl Default for TagSettings {
    fn default() -> Self {
        Self {
            mined: 4000,
            top_k: 8,
            min_cosine: 0.22,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationSettings {
    pub llm: LlmChoice,
    pub captioner: CaptionerChoice,
    /// The merge prompt (the paper's App. A.2 unless replaced).
    pub template: String,
    /// Synthetic texts per image (paper: 1).
    pub synthetic_per_image: usize,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    /// `None`: no tags (the merge prompt gets none).
    pub tags: Option<TagSettings>,
}

impl Default for GenerationSettings {
    /// `llm` has no default: a recipe names one (`validate` says so).
    fn default() -> Self {
        Self {
            llm: LlmChoice::Endpoint {
                base_url: String::new(),
                model: "default".into(),
            },
            captioner: CaptionerChoice::AltText,
            template: crate::generate::prompt::A2_MERGE_PROMPT.to_string(),
            synthetic_per_image: 1,
            max_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            tags: None,
        }
    }
}

/// The second half's first steps: which dual encoder embeds both images and
/// sentences, how the sentences are clustered, and how many texts each image gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairingSettings {
    /// Dual-encoder weights (both towers are used).
    pub encoder: EncoderChoice,
    /// K = sentences / this (paper: 0.84B / 2M = 420), unless `clusters` is set.
    pub sentences_per_cluster: usize,
    pub clusters: Option<usize>,
    pub iterations: usize,
    pub seed: u64,
    pub max_points_per_centroid: usize,
    /// Two-level k-means; `None`: from `cluster_text::TWO_LEVEL_FROM` clusters on.
    pub two_level: Option<bool>,
    /// Two-level only: assign each sentence among the fine centroids of its this
    /// many nearest coarse clusters (cheaper, approximate); `None`: among all K.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assign_probe: Option<usize>,
    /// Text clusters searched per image (paper: 1).
    pub probe: usize,
    /// Realistic texts per image (paper: 3).
    pub texts_per_image: usize,
}

impl Default for PairingSettings {
    /// `encoder` has no default: a recipe names one (`validate` says so).
    fn default() -> Self {
        Self {
            encoder: EncoderChoice::Weights(String::new()),
            sentences_per_cluster: crate::cluster::DEFAULT_SENTENCES_PER_CLUSTER,
            clusters: None,
            iterations: 25,
            seed: 1234,
            max_points_per_centroid: 256,
            two_level: None,
            assign_probe: None,
            probe: 1,
            texts_per_image: 3,
        }
    }
}

/// The language model (a Hugging Face GPT-2 snapshot) and the kept perplexity range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexitySettings {
    pub model: PathBuf,
    #[serde(flatten)]
    pub range: PerplexityRange,
}

/// The image encoder (`color-histogram`, or a CLIP checkpoint path resolved by the
/// caller) and the cosine at which two images are duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SemanticSettings {
    pub encoder: EncoderChoice,
    pub threshold: f32,
    /// SemDeDup: k-means into this many partitions, all pairs within each
    /// (`dedup::link::CosinePairs::Clusters`); absent: LSH over the whole corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<usize>,
}

/// The download settings a store is pinned to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FetchSettings {
    pub timeout_secs: f64,
    pub retries: u32,
    pub max_bytes: u64,
    pub threads: usize,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            timeout_secs: 10.0,
            retries: 2,
            max_bytes: DEFAULT_MAX_IMAGE_BYTES,
            threads: 32,
        }
    }
}

impl FetchSettings {
    pub fn options(&self) -> FetchOptions {
        FetchOptions {
            timeout: std::time::Duration::from_secs_f64(self.timeout_secs),
            retries: self.retries,
            max_bytes: self.max_bytes,
            threads: self.threads,
            ..FetchOptions::default()
        }
    }
}

impl Manifest {
    /// Write the manifest into a new store, or check that an existing store was
    /// started with the same settings.
    pub fn pin(&self, store: &Path) -> Result<()> {
        let path = store.join("manifest.json");
        if let Ok(bytes) = std::fs::read(&path) {
            let old: Manifest = serde_json::from_slice(&bytes)?;
            if &old != self {
                bail!(
                    "{} was started with other settings:\n  store: {}\n  now:   {}\n\
                     use a new --store, or the same settings to resume it",
                    store.display(),
                    serde_json::to_string(&old)?,
                    serde_json::to_string(self)?
                );
            }
            return Ok(());
        }
        realsyn_io::fs::write_atomic(&path, &serde_json::to_vec_pretty(self)?)
    }

    /// The CAT filter the manifest asks for, loaded.
    pub fn cat_filter(&self) -> Result<Option<std::sync::Arc<CatFilter>>> {
        Ok(self
            .cat_wordnet
            .as_deref()
            .map(CatFilter::load)
            .transpose()?
            .map(std::sync::Arc::new))
    }

    pub fn read(store: &Path) -> Result<Self> {
        let path = store.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|_| {
            anyhow::anyhow!(
                "{} has no manifest.json: run `realsyn build extract` first",
                store.display()
            )
        })?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}
