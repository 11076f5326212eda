//! The builder's stages as one ordered list (`STAGES`, the paper's order). Each stage
//! is a type that says its name (= its folder in the store and its subcommand), the
//! paper step it implements, how its work fans out, which models it needs, which of
//! its paper steps a manifest leaves off, and how to run one part. `build all`, the
//! single-stage subcommands, model loading, the funnel and the "steps not run"
//! report all read this list; adding a stage is adding a type and a line here.
//! `run_all` is `build all`: every stage, every part, in order.

use std::path::Path;

use anyhow::{Result, bail};

use crate::balance::stage as balance;
use crate::cluster::search::{CpuSearch, VectorSearch};
use crate::cluster::stage as cluster_text;
use crate::dedup::images::Semantic as ImageSemantic;
use crate::dedup::link::CosinePairs;
use crate::dedup::text_semantic::TextSemantic;
use crate::dedup::{
    images as dedup_images, text as dedup_text, text_semantic as dedup_text_semantic,
};
use crate::embed::{DualEmbedder, ImageEmbedder, TextEmbedder};
use crate::extract::ingest::Input;
use crate::extract::stage as extract;
use crate::filter::cat::CatFilter;
use crate::filter::perplexity::PerplexityScorer;
use crate::filter::stage as filter_text;
use crate::filter::stage::PerplexityFilter;
use crate::filter::text_filters::WordCounts;
use crate::generate::caption::Captioner;
use crate::generate::llm::ChatLlm;
use crate::generate::stage as generate;
use crate::retrieve::stage as retrieve;
use crate::store::funnel::Funnel;
use crate::store::manifest::{FetchSettings, Manifest};
use crate::store::shard::ShardSpec;
use crate::store::{
    BALANCE, CLUSTER_TEXT, DEDUP_IMAGES, DEDUP_TEXT, DEDUP_TEXT_SEMANTIC, EXTRACT, FILTER_TEXT,
    GENERATE, RETRIEVE, WRITE,
};
use crate::write::stage as write;

/// How a stage's work is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fan {
    /// One job per part (`--shard i/N`, the manifest's part count): a scheduler can
    /// run the parts anywhere, in any order.
    Parts,
    /// One job over the whole corpus (union-find needs every row at once).
    Whole,
}

/// The models a stage needs loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelNeeds {
    pub image_encoder: bool,
    pub text_encoder: bool,
    pub gpt2: bool,
    /// The pairing dual encoder (`Manifest::pairing`).
    pub pair_encoder: bool,
    /// The generation's LLM and captioner (`Manifest::generation`).
    pub generation: bool,
    /// Large GEMMs (k-means, centroid ranking): on the run's device when it is a
    /// GPU, even when no model is loaded.
    pub vector_search: bool,
}

impl ModelNeeds {
    pub fn any(self) -> bool {
        self.image_encoder || self.text_encoder || self.gpt2 || self.pair_encoder || self.generation
    }

    /// The pairing stages' needs: the dual encoder unless its embeddings are
    /// reused, and the device for the GEMMs.
    fn pairing(encoder: bool) -> Self {
        ModelNeeds {
            pair_encoder: encoder,
            vector_search: true,
            ..ModelNeeds::default()
        }
    }

    pub fn union(self, other: ModelNeeds) -> ModelNeeds {
        ModelNeeds {
            image_encoder: self.image_encoder || other.image_encoder,
            text_encoder: self.text_encoder || other.text_encoder,
            gpt2: self.gpt2 || other.gpt2,
            pair_encoder: self.pair_encoder || other.pair_encoder,
            generation: self.generation || other.generation,
            vector_search: self.vector_search || other.vector_search,
        }
    }
}

/// One stage of the builder.
pub trait Stage: Sync {
    /// Its subcommand and its folder in the store.
    fn name(&self) -> &'static str;
    /// The paper step it implements.
    fn paper_step(&self) -> &'static str;
    /// The stages whose store folders it reads (it writes its own, `STORE/<name>/`;
    /// `write` also the dataset, `STORE/dataset/`).
    fn reads(&self) -> &'static [&'static str];
    /// The keys of the build recipe (`Manifest`) it reads: its settings section.
    fn settings(&self) -> &'static [&'static str];
    fn fan(&self) -> Fan;
    /// The models it runs under `m`.
    fn needs(&self, m: &Manifest) -> ModelNeeds;
    /// The paper steps of this stage that `m` leaves off, each with the flag that
    /// turns it on. A stage all of whose steps are off is not run.
    fn steps_off(&self, m: &Manifest) -> Vec<&'static str>;
    /// Whether the whole stage is off under `m` (it then writes nothing).
    fn off(&self, _m: &Manifest) -> bool {
        false
    }
    /// Run one part (`Fan::Whole`: the single part `0/1`); false when the part was
    /// already complete and skipped.
    fn run(&self, cx: &mut StageRun<'_, '_>, shard: ShardSpec) -> Result<bool>;
}

/// Every stage, in the paper's order (§3.1, then §3.2's clustering, retrieval and
/// generation, then §3.3's balance and the dataset writer).
pub static STAGES: &[&dyn Stage] = &[
    &Extract,
    &FilterText,
    &DedupText,
    &DedupTextSemantic,
    &DedupImages,
    &ClusterText,
    &Retrieve,
    &Generate,
    &Balance,
    &Write,
];

/// The stage called `name`.
pub fn stage(name: &str) -> Result<&'static dyn Stage> {
    match STAGES.iter().find(|s| s.name() == name) {
        Some(s) => Ok(*s),
        None => bail!(
            "no stage {name:?}; the stages are {}",
            STAGES
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What the models of `stages` need under `m`.
pub fn needs(stages: &[&dyn Stage], m: &Manifest) -> ModelNeeds {
    stages
        .iter()
        .filter(|s| !s.off(m))
        .fold(ModelNeeds::default(), |acc, s| acc.union(s.needs(m)))
}

/// The paper steps `m` leaves off, in pipeline order.
pub fn steps_off(m: &Manifest) -> Vec<&'static str> {
    STAGES.iter().flat_map(|s| s.steps_off(m)).collect()
}

/// One run of stages on a store: the manifest, the loaded models, and what the
/// stages of one run share (read once, on first use).
pub struct StageRun<'a, 'm> {
    pub store: &'a Path,
    pub manifest: &'a Manifest,
    pub models: Models<'m>,
    input: Option<Input>,
    cat: Option<Option<std::sync::Arc<CatFilter>>>,
    counts: Option<WordCounts>,
}

impl<'a, 'm> StageRun<'a, 'm> {
    pub fn new(store: &'a Path, manifest: &'a Manifest, models: Models<'m>) -> Self {
        Self {
            store,
            manifest,
            models,
            input: None,
            cat: None,
            counts: None,
        }
    }

    /// Run `stage` on `shard` (every part when `None`), logging each part.
    pub fn run(&mut self, stage: &dyn Stage, shard: Option<ShardSpec>) -> Result<()> {
        if stage.off(self.manifest) {
            bail!(
                "{} was started without {}: there is no {} to run",
                self.store.display(),
                stage.steps_off(self.manifest).join(", "),
                stage.name()
            );
        }
        let shards: Vec<ShardSpec> = match (stage.fan(), shard) {
            (Fan::Whole, _) => vec![ShardSpec::default()],
            (Fan::Parts, Some(s)) => vec![s],
            (Fan::Parts, None) => ShardSpec::all(self.manifest.parts).collect(),
        };
        for s in shards {
            let ran = stage.run(self, s)?;
            report(stage.name(), s, ran);
        }
        Ok(())
    }
}

/// §3.1 "Real-World Data Extraction": documents -> images and sentences.
pub struct Extract;

impl Stage for Extract {
    fn name(&self) -> &'static str {
        EXTRACT
    }
    fn paper_step(&self) -> &'static str {
        "§3.1 extraction: images (size/aspect, pHash) and sentences (Punkt, emoji/URL, length, CAT)"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[]
    }
    fn settings(&self) -> &'static [&'static str] {
        &[
            "format",
            "inputs",
            "parts",
            "images_per_tar",
            "fetch",
            "cat_wordnet",
            "images_outside_input",
        ]
    }
    fn fan(&self) -> Fan {
        Fan::Parts
    }
    fn needs(&self, _m: &Manifest) -> ModelNeeds {
        ModelNeeds::default()
    }
    fn steps_off(&self, m: &Manifest) -> Vec<&'static str> {
        let mut off = Vec::new();
        if m.cat_wordnet.is_none() {
            off.push("CAT filter (--no-cat)");
        }
        off
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, shard: ShardSpec) -> Result<bool> {
        let m = cx.manifest;
        if cx.input.is_none() {
            cx.input = Some(Input::list(m.format, &m.inputs)?);
        }
        if cx.cat.is_none() {
            cx.cat = Some(m.cat_filter()?);
        }
        let opts = extract::ExtractOptions {
            store: cx.store.to_path_buf(),
            shard,
            images_per_tar: m.images_per_tar,
            fetch: m.fetch.as_ref().map(FetchSettings::options),
            cat: cx.cat.clone().flatten(),
            local: extract::local_images(m),
        };
        let input = cx.input.as_ref().expect("listed above");
        Ok(extract::run(input, &opts)?.is_some())
    }
}

/// §3.1 step 2-3: entropy (Eq. 1) and GPT-2 perplexity.
pub struct FilterText;

impl Stage for FilterText {
    fn name(&self) -> &'static str {
        FILTER_TEXT
    }
    fn paper_step(&self) -> &'static str {
        "§3.1 sentence filters: information entropy (Eq. 1), GPT-2 perplexity"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[EXTRACT]
    }
    fn settings(&self) -> &'static [&'static str] {
        &["min_entropy", "perplexity"]
    }
    fn fan(&self) -> Fan {
        Fan::Parts
    }
    fn needs(&self, m: &Manifest) -> ModelNeeds {
        ModelNeeds {
            gpt2: m.perplexity.is_some(),
            ..ModelNeeds::default()
        }
    }
    fn steps_off(&self, m: &Manifest) -> Vec<&'static str> {
        let mut off = Vec::new();
        if m.perplexity.is_none() {
            off.push("GPT-2 perplexity filter (no --gpt2)");
        }
        off
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, shard: ShardSpec) -> Result<bool> {
        // Corpus-wide word probabilities: every extract part, read once per run.
        if cx.counts.is_none() {
            cx.counts = Some(filter_text::corpus_counts(cx.store)?);
        }
        let (store, m) = (cx.store, cx.manifest);
        let counts = cx.counts.as_ref().expect("counted above");
        let ppl = cx.models.perplexity_filter(m)?;
        Ok(filter_text::run(store, shard, counts, m.min_entropy, ppl)?.is_some())
    }
}

/// §3.1 step 4, near-exact: sentences that normalise to the same key.
pub struct DedupText;

impl Stage for DedupText {
    fn name(&self) -> &'static str {
        DEDUP_TEXT
    }
    fn paper_step(&self) -> &'static str {
        "§3.1 sentence deduplication, near-exact (normalised key, partitioned by hash)"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[FILTER_TEXT]
    }
    fn settings(&self) -> &'static [&'static str] {
        &[]
    }
    fn fan(&self) -> Fan {
        Fan::Parts
    }
    fn needs(&self, _m: &Manifest) -> ModelNeeds {
        ModelNeeds::default()
    }
    fn steps_off(&self, _m: &Manifest) -> Vec<&'static str> {
        Vec::new()
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, shard: ShardSpec) -> Result<bool> {
        Ok(dedup_text::run(cx.store, shard)?.is_some())
    }
}

/// §3.1 step 4, semantic: sentences whose text embeddings nearly coincide.
pub struct DedupTextSemantic;

impl Stage for DedupTextSemantic {
    fn name(&self) -> &'static str {
        DEDUP_TEXT_SEMANTIC
    }
    fn paper_step(&self) -> &'static str {
        "§3.1 sentence deduplication, semantic (text embeddings, LSH, union-find)"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[DEDUP_TEXT]
    }
    fn settings(&self) -> &'static [&'static str] {
        &["text_semantic"]
    }
    fn fan(&self) -> Fan {
        Fan::Whole
    }
    fn needs(&self, m: &Manifest) -> ModelNeeds {
        ModelNeeds {
            text_encoder: m.text_semantic.is_some(),
            vector_search: m
                .text_semantic
                .as_ref()
                .is_some_and(|s| s.partitions.is_some()),
            ..ModelNeeds::default()
        }
    }
    fn steps_off(&self, m: &Manifest) -> Vec<&'static str> {
        if m.text_semantic.is_none() {
            vec!["semantic sentence dedup (no --text-encoder)"]
        } else {
            Vec::new()
        }
    }
    fn off(&self, m: &Manifest) -> bool {
        m.text_semantic.is_none()
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, _shard: ShardSpec) -> Result<bool> {
        let semantic = cx
            .models
            .text_semantic(cx.manifest)?
            .expect("the stage is off without a text encoder");
        Ok(dedup_text_semantic::run(cx.store, semantic)?.is_some())
    }
}

/// §3.1 image deduplication: perceptual (pHash) and semantic (image embeddings).
pub struct DedupImages;

impl Stage for DedupImages {
    fn name(&self) -> &'static str {
        DEDUP_IMAGES
    }
    fn paper_step(&self) -> &'static str {
        "§3.1 image deduplication: perceptual hash and image embeddings, union-find"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[EXTRACT]
    }
    fn settings(&self) -> &'static [&'static str] {
        &["max_hamming", "semantic"]
    }
    fn fan(&self) -> Fan {
        Fan::Whole
    }
    fn needs(&self, m: &Manifest) -> ModelNeeds {
        ModelNeeds {
            image_encoder: m.semantic.is_some(),
            vector_search: m.semantic.as_ref().is_some_and(|s| s.partitions.is_some()),
            ..ModelNeeds::default()
        }
    }
    fn steps_off(&self, m: &Manifest) -> Vec<&'static str> {
        if m.semantic.is_none() {
            vec!["semantic image dedup (no --image-encoder)"]
        } else {
            Vec::new()
        }
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, _shard: ShardSpec) -> Result<bool> {
        let m = cx.manifest;
        let semantic = cx.models.image_semantic(m)?;
        Ok(dedup_images::run(cx.store, m.max_hamming, semantic)?.is_some())
    }
}

const NO_PAIRING: &str = "text clustering and hierarchical retrieval (no --pair-encoder)";

/// §3.2 text semantic clustering: k-means over the sentence embeddings.
pub struct ClusterText;

impl Stage for ClusterText {
    fn name(&self) -> &'static str {
        CLUSTER_TEXT
    }
    fn paper_step(&self) -> &'static str {
        "§3.2 text semantic clustering: dual-encoder sentence embeddings, spherical k-means"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[DEDUP_TEXT, DEDUP_TEXT_SEMANTIC]
    }
    fn settings(&self) -> &'static [&'static str] {
        &["pairing"]
    }
    fn fan(&self) -> Fan {
        Fan::Whole
    }
    fn needs(&self, m: &Manifest) -> ModelNeeds {
        ModelNeeds::pairing(m.pairing.is_some() && !cluster_text::reuses_text_embeddings(m))
    }
    fn steps_off(&self, m: &Manifest) -> Vec<&'static str> {
        if m.pairing.is_none() {
            vec![NO_PAIRING]
        } else {
            Vec::new()
        }
    }
    fn off(&self, m: &Manifest) -> bool {
        m.pairing.is_none()
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, _shard: ShardSpec) -> Result<bool> {
        let m = cx.manifest;
        let settings = m
            .pairing
            .as_ref()
            .expect("the stage is off without pairing");
        let search = cx.models.search();
        let text = cx
            .models
            .pair
            .as_deref_mut()
            .map(|e| e as &mut dyn crate::embed::TextEmbedder);
        Ok(cluster_text::run(cx.store, m, settings, text, search)?.is_some())
    }
}

/// §3.2 hierarchical retrieval: per image, the nearest sentences of its nearest
/// text clusters.
pub struct Retrieve;

impl Stage for Retrieve {
    fn name(&self) -> &'static str {
        RETRIEVE
    }
    fn paper_step(&self) -> &'static str {
        "§3.2 hierarchical retrieval: top-3 sentences per image from its nearest text clusters"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[EXTRACT, DEDUP_IMAGES, CLUSTER_TEXT]
    }
    fn settings(&self) -> &'static [&'static str] {
        &["pairing"]
    }
    fn fan(&self) -> Fan {
        Fan::Parts
    }
    fn needs(&self, m: &Manifest) -> ModelNeeds {
        ModelNeeds::pairing(m.pairing.is_some() && !retrieve::reuses_image_embeddings(m))
    }
    fn steps_off(&self, _m: &Manifest) -> Vec<&'static str> {
        // Named once, by cluster-text.
        Vec::new()
    }
    fn off(&self, m: &Manifest) -> bool {
        m.pairing.is_none()
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, shard: ShardSpec) -> Result<bool> {
        let m = cx.manifest;
        let settings = m
            .pairing
            .as_ref()
            .expect("the stage is off without pairing");
        let search = cx.models.search();
        let image = cx
            .models
            .pair
            .as_deref_mut()
            .map(|e| e as &mut dyn crate::embed::ImageEmbedder);
        Ok(retrieve::run(cx.store, m, settings, shard, image, search)?.is_some())
    }
}

/// §3.2 image semantic augmented generation: caption + open-set tags + LLM merge
/// of the top retrieved text into a synthetic text.
pub struct Generate;

impl Stage for Generate {
    fn name(&self) -> &'static str {
        GENERATE
    }
    fn paper_step(&self) -> &'static str {
        "§3.2 image semantic augmented generation: caption, open-set tags, LLM merge (App. A.2 prompt)"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[EXTRACT, CLUSTER_TEXT, RETRIEVE]
    }
    fn settings(&self) -> &'static [&'static str] {
        &["generation", "cat_wordnet"]
    }
    fn fan(&self) -> Fan {
        Fan::Parts
    }
    fn needs(&self, m: &Manifest) -> ModelNeeds {
        let g = m.generation.as_ref();
        ModelNeeds {
            generation: g.is_some(),
            pair_encoder: g.is_some_and(|g| g.tags.is_some()),
            ..ModelNeeds::default()
        }
    }
    fn steps_off(&self, m: &Manifest) -> Vec<&'static str> {
        match &m.generation {
            None if m.pairing.is_some() => vec!["image semantic augmented generation (no --llm)"],
            None => Vec::new(),
            Some(g) => {
                let mut off = Vec::new();
                if g.captioner == crate::store::manifest::CaptionerChoice::AltText {
                    off.push("captioner (no --captioner: alt text stands in)");
                }
                if g.tags.is_none() {
                    off.push("open-set tagger (--no-tags)");
                }
                off
            }
        }
    }
    fn off(&self, m: &Manifest) -> bool {
        m.generation.is_none() || m.pairing.is_none()
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, shard: ShardSpec) -> Result<bool> {
        let m = cx.manifest;
        let settings = m
            .generation
            .as_ref()
            .expect("the stage is off without generation");
        // Re-borrowed as shorter-lived trait objects (`&mut dyn` is invariant).
        let Some(llm) = cx
            .models
            .llm
            .as_deref_mut()
            .map(|l| l as &mut dyn crate::generate::llm::ChatLlm)
        else {
            bail!("generate needs its LLM loaded");
        };
        let models = generate::GenerateModels {
            llm,
            captioner: cx
                .models
                .captioner
                .as_deref_mut()
                .map(|c| c as &mut dyn crate::generate::caption::Captioner),
            tagger: cx
                .models
                .pair
                .as_deref_mut()
                .map(|p| p as &mut dyn crate::embed::DualEmbedder),
        };
        Ok(generate::run(cx.store, m, settings, shard, models)?.is_some())
    }
}

/// §3.3 semantic balance sampling: image-text cosine band, then per image cluster
/// at most `cap` samples (one variant per cap) and the random baseline.
pub struct Balance;

impl Stage for Balance {
    fn name(&self) -> &'static str {
        BALANCE
    }
    fn paper_step(&self) -> &'static str {
        "§3.3 semantic balance sampling: cosine band on image vs synthetic text, image k-means, per-cluster caps"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[DEDUP_IMAGES, RETRIEVE, GENERATE]
    }
    fn settings(&self) -> &'static [&'static str] {
        &["balance"]
    }
    fn fan(&self) -> Fan {
        Fan::Whole
    }
    fn needs(&self, m: &Manifest) -> ModelNeeds {
        ModelNeeds::pairing(m.balance.is_some() && m.pairing.is_some())
    }
    fn steps_off(&self, m: &Manifest) -> Vec<&'static str> {
        if m.pairing.is_some() && m.balance.is_none() {
            vec!["semantic balance sampling (no --balance-caps)"]
        } else {
            Vec::new()
        }
    }
    fn off(&self, m: &Manifest) -> bool {
        m.balance.is_none() || m.pairing.is_none()
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, _shard: ShardSpec) -> Result<bool> {
        let m = cx.manifest;
        let settings = m
            .balance
            .as_ref()
            .expect("the stage is off without balance");
        let search = cx.models.search();
        let encoder = cx
            .models
            .pair
            .as_deref_mut()
            .map(|p| p as &mut dyn crate::embed::DualEmbedder);
        Ok(balance::run(cx.store, m, settings, encoder, search)?.is_some())
    }
}

/// The dataset: WebDataset shards as img2dataset writes them (Table 13's format).
pub struct Write;

impl Stage for Write {
    fn name(&self) -> &'static str {
        WRITE
    }
    fn paper_step(&self) -> &'static str {
        "§3.3 / Table 13 the dataset: WebDataset shards (jpg, txt = text1, json with text2, text3, syn_text)"
    }
    fn reads(&self) -> &'static [&'static str] {
        &[EXTRACT, RETRIEVE, GENERATE, BALANCE]
    }
    fn settings(&self) -> &'static [&'static str] {
        &["dataset"]
    }
    fn fan(&self) -> Fan {
        Fan::Parts
    }
    fn needs(&self, _m: &Manifest) -> ModelNeeds {
        ModelNeeds::default()
    }
    fn steps_off(&self, m: &Manifest) -> Vec<&'static str> {
        if m.pairing.is_some() && m.dataset.is_none() {
            vec!["dataset writer (no --dataset)"]
        } else {
            Vec::new()
        }
    }
    fn off(&self, m: &Manifest) -> bool {
        m.dataset.is_none() || m.pairing.is_none()
    }
    fn run(&self, cx: &mut StageRun<'_, '_>, shard: ShardSpec) -> Result<bool> {
        let m = cx.manifest;
        let settings = m
            .dataset
            .as_ref()
            .expect("the stage is off without a dataset");
        Ok(write::run(cx.store, m, settings, shard)?.is_some())
    }
}

/// Every stage of `STAGES`, every part, in order; finished parts are skipped and
/// stages the manifest leaves off are passed over. Returns the store's whole funnel
/// (also written to `STORE/funnel.json` and `funnel.md`). `models` must hold every
/// model `list::needs(STAGES, manifest)` asks for.
pub fn run_all(store: &Path, manifest: &Manifest, models: Models) -> Result<Funnel> {
    manifest.pin(store)?;
    let mut run = StageRun::new(store, manifest, models);
    for stage in STAGES {
        if !stage.off(manifest) {
            run.run(*stage, None)?;
        }
    }
    write_store_funnel(store)
}

/// Sum every finished part's funnel and write `funnel.json` and `funnel.md`.
pub fn write_store_funnel(store: &Path) -> Result<Funnel> {
    let funnel = store_funnel(store)?;
    realsyn_io::fs::write_atomic(
        &store.join("funnel.json"),
        &serde_json::to_vec_pretty(&funnel)?,
    )?;
    realsyn_io::fs::write_atomic(&store.join("funnel.md"), funnel.table().as_bytes())?;
    Ok(funnel)
}

/// Log one part: run now, or found complete and skipped.
pub fn report(stage: &str, shard: ShardSpec, ran: bool) {
    if ran {
        eprintln!("{stage} {shard}: done");
    } else {
        eprintln!("{stage} {shard}: already complete, skipped");
    }
}

/// The summed funnel of every finished part of the stages present under `store`, in
/// pipeline order.
pub fn store_funnel(store: &Path) -> Result<Funnel> {
    let mut total = Funnel::default();
    for stage in crate::pipeline::STAGES {
        let dir = store.join(stage.name());
        if !dir.exists() {
            continue;
        }
        for part in crate::store::shard::complete_parts(&dir)? {
            total.merge(&crate::store::read_funnel(&part)?);
        }
    }
    Ok(total)
}

/// The models a build runs, loaded by the caller (which picks the backend and
/// device). Each must be present when the manifest asks for its step.
#[derive(Default)]
pub struct Models<'a> {
    pub image: Option<&'a mut dyn ImageEmbedder>,
    pub perplexity: Option<&'a mut dyn PerplexityScorer>,
    pub text: Option<&'a mut dyn TextEmbedder>,
    /// The pairing dual encoder (both towers of one model).
    pub pair: Option<&'a mut dyn DualEmbedder>,
    /// The language model of the generation's merge step.
    pub llm: Option<&'a mut dyn ChatLlm>,
    /// The captioner of the generation (`None`: alt text).
    pub captioner: Option<&'a mut dyn Captioner>,
    /// Where the large GEMMs run (`None`: the CPU).
    pub search: Option<&'a dyn VectorSearch>,
}

impl<'a> Models<'a> {
    /// Where the large GEMMs run.
    pub fn search(&self) -> &'a dyn VectorSearch {
        self.search.unwrap_or(&CpuSearch)
    }

    /// The perplexity filter the manifest asks for, with its loaded scorer.
    pub fn perplexity_filter(
        &mut self,
        manifest: &Manifest,
    ) -> Result<Option<PerplexityFilter<'_>>> {
        match (&manifest.perplexity, self.perplexity.as_deref_mut()) {
            (None, _) => Ok(None),
            (Some(s), Some(scorer)) => Ok(Some(PerplexityFilter {
                scorer,
                range: s.range,
            })),
            (Some(s), None) => bail!(
                "the perplexity filter needs GPT-2 {} loaded",
                s.model.display()
            ),
        }
    }

    /// The semantic image dedup the manifest asks for, with its loaded encoder.
    pub fn image_semantic(&mut self, manifest: &Manifest) -> Result<Option<ImageSemantic<'_>>> {
        let search = self.search();
        match (&manifest.semantic, self.image.as_deref_mut()) {
            (None, _) => Ok(None),
            (Some(s), Some(embedder)) => Ok(Some(ImageSemantic {
                embedder,
                threshold: s.threshold,
                pairs: CosinePairs::from_partitions(s.partitions, search),
            })),
            (Some(s), None) => bail!(
                "semantic dedup with {:?} needs its image encoder loaded",
                s.encoder.to_string()
            ),
        }
    }

    /// The semantic sentence dedup the manifest asks for, with its loaded encoder.
    pub fn text_semantic(&mut self, manifest: &Manifest) -> Result<Option<TextSemantic<'_>>> {
        let search = self.search();
        match (&manifest.text_semantic, self.text.as_deref_mut()) {
            (None, _) => Ok(None),
            (Some(s), Some(embedder)) => Ok(Some(TextSemantic {
                embedder,
                threshold: s.threshold,
                pairs: CosinePairs::from_partitions(s.partitions, search),
            })),
            (Some(s), None) => bail!(
                "semantic sentence dedup needs text encoder {:?} loaded",
                s.encoder.to_string()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list is in dependency order: a stage reads only stages before it.
    #[test]
    fn every_stage_reads_only_earlier_stages() {
        for (i, s) in STAGES.iter().enumerate() {
            for r in s.reads() {
                let j = STAGES.iter().position(|t| t.name() == *r);
                assert!(
                    j.is_some_and(|j| j < i),
                    "{} reads {r}, which is not before it",
                    s.name()
                );
            }
        }
    }
}
