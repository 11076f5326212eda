//! Stage `balance`: semantic balance sampling (paper §3.3). One job over every
//! paired image (generate's rows, or retrieve's when the store generates nothing):
//!
//! 1. cosine(image, synthetic text) with the pairing dual encoder (text1's when an
//!    image has no synthetic text), and the band (`crate::balance::Band`) drops
//!    OCR-like pairs above it and mismatched pairs below it. The report gives what
//!    the paper's band and the quantile band drop on these cosines, whichever is
//!    applied, since the paper's bounds are on EVA02-CLIP E/14-plus's scale.
//! 2. Spherical k-means (`crate::cluster::kmeans`) over the image embeddings of the
//!    pairs the band keeps (paper: 168.3M pairs into 1M clusters).
//! 3. Each cluster's members get a seeded random rank; a variant with cap c keeps
//!    ranks below c (paper: 20 / 35 / 180 for RealSyn15M / 30M / 100M), and the
//!    random-sampling baseline of Table 5 gets one seeded rank over the whole pool.
//!
//! Image embeddings are dedup-images' when they came from the pairing encoder
//! (the same file), computed here otherwise; either way they are scored 4,096
//! rows at a time and stream to `image_embeddings.npy`, from which k-means
//! trains on a sample and every kept row is assigned block by block. What stays
//! in memory is about 9 bytes per pair and 16 per kept pair (4 GB at the paper's
//! 168M), plus, when embeddings are reused, the map from image id to
//! dedup-images' row.
//!
//! Output (`balance/part-0-of-1/`): `samples.jsonl`, one row per paired image in
//! the source's order (its part and line, cosine, verdict, cluster, rank, random
//! rank); `image_embeddings.npy` (its rows); `image_centroids.npy`; `balance.json` (the band's effect, cluster sizes
//! before and after each cap and for the random baseline of the same size).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use realsyn_io::npy::{NpyMatrix, NpyRowWriter};
use serde::{Deserialize, Serialize};

use crate::balance::{self, Band, BandEffect, Verdict};
use crate::cluster::fit::{TWO_LEVEL_FROM, assign_all, fit};
use crate::cluster::kmeans::{KMeansParams, NoCheckpoint};
use crate::cluster::search::VectorSearch;
use crate::cluster::stage::SizeStats;
use crate::embed::DualEmbedder;
use crate::extract::stage::ImageRow;
use crate::generate::stage::{Caption, GeneratedRow};
use crate::retrieve::stage::{PairRow, embed_images, reuses_image_embeddings};
use crate::store::funnel::Funnel;
use crate::store::manifest::{BalanceSettings, Manifest};
use crate::store::shard::{PartWriter, ShardSpec, complete_parts};
use crate::store::{
    BALANCE, DEDUP_IMAGES, GENERATE, JsonlWriter, RETRIEVE, iter_jsonl, write_funnel,
};

const EMBED_BATCH: usize = 64;

/// One paired image's place in the balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalancedRow {
    /// Index of the source part (`SamplesSource::parts`) and line in its file.
    pub part: usize,
    pub line: usize,
    pub image_id: String,
    /// cosine(image, scored text); NaN (null) when the image could not be embedded.
    pub cosine: Option<f32>,
    /// `syn_text`, or `text1` for an image without a synthetic text.
    pub scored_text: String,
    pub verdict: Option<Verdict>,
    /// The image cluster, the rank within it and the rank in the random baseline,
    /// for pairs the band keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_rank: Option<u32>,
}

impl BalancedRow {
    /// Whether the variant with this cap keeps the row.
    pub fn in_balanced(&self, cap: usize) -> bool {
        self.rank.is_some_and(|r| (r as usize) < cap)
    }
    /// Whether the random baseline of `size` samples keeps the row.
    pub fn in_random(&self, size: usize) -> bool {
        self.random_rank.is_some_and(|r| (r as usize) < size)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantSummary {
    pub cap: usize,
    pub samples: usize,
    /// Cluster sizes after the cap, and of the random baseline of the same size.
    pub sizes: SizeStats,
    pub random_sizes: SizeStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BalanceSummary {
    pub encoder: String,
    pub source: String,
    pub pairs: usize,
    pub not_embedded: usize,
    /// cosines scored against text1 (no synthetic text).
    pub scored_on_text1: usize,
    /// The band applied, and the paper's band and the quantiles that drop the
    /// same share, measured on these cosines.
    pub applied: BandEffect,
    pub paper_band: BandEffect,
    pub applied_as_quantiles: (f64, f64),
    pub clusters: usize,
    pub kmeans_objective: Vec<f64>,
    pub sizes_before: SizeStats,
    pub variants: Vec<VariantSummary>,
    pub settings: BalanceSettings,
}

/// The paired images of a store: generate's rows, or retrieve's when the store
/// generates nothing (then without caption, tags or synthetic text).
pub struct SamplesSource {
    pub stage: &'static str,
    pub parts: Vec<PathBuf>,
    file: &'static str,
}

impl SamplesSource {
    pub fn open(store: &Path, m: &Manifest) -> Result<Self> {
        let (stage, file) = if m.generation.is_some() {
            (GENERATE, "samples.jsonl")
        } else {
            (RETRIEVE, "pairs.jsonl")
        };
        let parts = complete_parts(&store.join(stage))
            .with_context(|| format!("the dataset is made of {stage}'s rows: run {stage} first"))?;
        Ok(Self { stage, parts, file })
    }

    /// The rows of part `p`, in order.
    pub fn rows(&self, p: usize) -> impl Iterator<Item = Result<GeneratedRow>> + use<> {
        let generated = self.stage == GENERATE;
        iter_jsonl::<serde_json::Value>(&self.parts[p].join(self.file))
            .enumerate()
            .map(move |(line, v)| {
                let v = v?;
                if generated {
                    return Ok(serde_json::from_value(v)?);
                }
                let pair: PairRow = serde_json::from_value(v)?;
                Ok(GeneratedRow {
                    row: line,
                    pair,
                    caption: Caption {
                        text: None,
                        source: "none".into(),
                    },
                    tags: Vec::new(),
                    synthetic: Vec::new(),
                    synthetic_missing: Vec::new(),
                })
            })
    }

    /// How many rows the parts hold (their lines, counted without parsing).
    pub fn count(&self) -> Result<usize> {
        let mut n = 0;
        for p in &self.parts {
            let path = p.join(self.file);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            n += bytes.iter().filter(|&&b| b == b'\n').count();
        }
        Ok(n)
    }

    /// Every row with its part and line.
    pub fn all(&self) -> impl Iterator<Item = Result<(usize, usize, GeneratedRow)>> + '_ {
        (0..self.parts.len()).flat_map(move |p| {
            self.rows(p)
                .enumerate()
                .map(move |(line, r)| r.map(|r| (p, line, r)))
        })
    }
}

/// The text a pair is scored on: its first synthetic text, else text1.
fn scored_text(r: &GeneratedRow) -> (&str, &'static str) {
    match r.synthetic.first() {
        Some(s) => (s.text.as_str(), "syn_text"),
        None => (
            r.pair.texts.first().map_or("", |t| t.text.as_str()),
            "text1",
        ),
    }
}

/// Rows embedded per round: image and text embeddings are never held for more.
const CHUNK: usize = 4096;

pub fn run(
    store: &Path,
    m: &Manifest,
    settings: &BalanceSettings,
    encoder: Option<&mut dyn DualEmbedder>,
    search: &dyn VectorSearch,
) -> Result<Option<Funnel>> {
    let source = SamplesSource::open(store, m)?;
    let Some(part) = PartWriter::begin(&store.join(BALANCE), ShardSpec::default())? else {
        return Ok(None);
    };
    let pairing = m
        .pairing
        .as_ref()
        .context("balance compares images with texts: the store needs --pair-encoder")?;
    let encoder = encoder.ok_or_else(|| {
        anyhow::anyhow!(
            "balance needs the pairing encoder {} loaded",
            pairing.encoder
        )
    })?;
    let n = source.count()?;
    if n == 0 {
        bail!("balance: {} has no paired images", source.stage);
    }
    eprintln!("balance: {n} paired images from {}", source.stage);
    // 1. Cosines, CHUNK rows at a time; every image embedding streams to
    //    image_embeddings.npy (zeros where the image could not be embedded).
    let emb_path = part.path("image_embeddings.npy");
    let reuse = if reuses_image_embeddings(m) {
        Some(DedupEmbeddings::open(store)?)
    } else {
        None
    };
    let mut scoring = Scoring {
        n,
        writer: None,
        path: emb_path.clone(),
        cosines: Vec::with_capacity(n),
        on_text1: Vec::with_capacity(n),
        bar: realsyn_data::progress::bar(n as u64, "balance: embed"),
    };
    let mut chunk: Vec<(usize, ImageRow, String, bool)> = Vec::with_capacity(CHUNK);
    for r in source.all() {
        let (_, _, g) = r?;
        let (text, which) = scored_text(&g);
        let (text, on_text1) = (text.to_string(), which == "text1");
        chunk.push((g.pair.image_row, g.pair.image, text, on_text1));
        if chunk.len() == CHUNK {
            scoring.score(
                store,
                reuse.as_ref(),
                &mut *encoder,
                std::mem::take(&mut chunk),
            )?;
        }
    }
    scoring.score(store, reuse.as_ref(), &mut *encoder, chunk)?;
    let Scoring {
        writer,
        cosines,
        on_text1,
        bar,
        ..
    } = scoring;
    bar.finish_and_clear();
    let d = writer
        .map(|(w, d)| w.finish().map(|_| d))
        .transpose()?
        .expect("n > 0 rows were scored");
    drop(reuse);
    // 2. The band.
    let finite: Vec<f32> = cosines.iter().copied().filter(|c| c.is_finite()).collect();
    let applied = balance::band_effect(settings.band, &finite);
    let bounds = (applied.low, applied.high);
    let mut funnel = Funnel::default();
    let band_step = "semantic balance: cosine band";
    let (above, below) = (
        format!("cosine above {:.4} (OCR-like)", bounds.1),
        format!("cosine below {:.4} (mismatched)", bounds.0),
    );
    let mut kept: Vec<u32> = Vec::new();
    for (i, &c) in cosines.iter().enumerate() {
        let step = funnel.step(band_step, "images");
        if !c.is_finite() {
            step.drop("image could not be embedded");
            continue;
        }
        match balance::verdict(c, bounds) {
            Verdict::Kept => {
                step.pass();
                kept.push(i as u32);
            }
            Verdict::Above => step.drop(&above),
            Verdict::Below => step.drop(&below),
        }
    }
    if kept.is_empty() {
        bail!(
            "balance: the band {} keeps none of {n} pairs (cosines {}); widen it, e.g. --balance-band q0.05..q0.90",
            settings.band,
            describe(&finite)
        );
    }
    // 3. Image clusters of the kept pairs: k-means on a sample (faiss's rule, capped
    //    as cluster-text's), then every kept row assigned block by block.
    let emb = NpyMatrix::open(&emb_path)?;
    let k = settings
        .clusters
        .unwrap_or_else(|| kept.len().div_ceil(settings.pairs_per_cluster.max(1)))
        .clamp(1, kept.len());
    let params = KMeansParams {
        k,
        iterations: settings.iterations,
        seed: settings.kmeans_seed,
        max_points_per_centroid: 256,
    };
    let two_level = k >= TWO_LEVEL_FROM;
    let read = |j: usize, out: &mut Vec<f32>| emb.push_row(kept[j] as usize, out);
    eprintln!(
        "balance: {} pairs in the band -> {k} image clusters ({}, GEMMs on {})",
        kept.len(),
        if two_level { "two-level" } else { "flat" },
        search.name()
    );
    let fitted = fit(
        kept.len(),
        d,
        &params,
        two_level,
        &read,
        search,
        &mut NoCheckpoint,
    )?;
    let km = fitted.km;
    let k = km.k();
    let assign = assign_all(&km, kept.len(), &read, None, search, "assign")?;
    // 4. Ranks: per cluster and for the random baseline.
    let ranks = balance::cluster_ranks(&assign, k, settings.sample_seed);
    let random = balance::random_ranks(kept.len(), settings.sample_seed ^ 0x5eed);
    let largest = settings.caps.iter().copied().max().unwrap_or(usize::MAX);
    let cap_step = funnel.step(
        &format!("semantic balance: cluster cap {largest}"),
        "images",
    );
    for &r in &ranks {
        cap_step.record(((r as usize) >= largest).then_some("over its cluster's cap"));
    }
    let variants = settings
        .caps
        .iter()
        .map(|&cap| {
            let samples = balance::variant_size(&ranks, cap);
            VariantSummary {
                cap,
                samples,
                sizes: SizeStats::of(&balance::cluster_sizes(&assign, k, |j| {
                    (ranks[j] as usize) < cap
                })),
                random_sizes: SizeStats::of(&balance::cluster_sizes(&assign, k, |j| {
                    (random[j] as usize) < samples
                })),
            }
        })
        .collect();
    let share_below = applied.below as f64 / finite.len().max(1) as f64;
    let share_above = applied.above as f64 / finite.len().max(1) as f64;
    let summary = BalanceSummary {
        encoder: pairing.encoder.to_string(),
        source: source.stage.into(),
        pairs: n,
        not_embedded: n - finite.len(),
        scored_on_text1: on_text1.iter().filter(|&&t| t).count(),
        paper_band: balance::band_effect(Band::default(), &finite),
        applied_as_quantiles: (share_below, 1.0 - share_above),
        applied,
        clusters: k,
        kmeans_objective: km.objective.clone(),
        sizes_before: SizeStats::of(&balance::cluster_sizes(&assign, k, |_| true)),
        variants,
        settings: settings.clone(),
    };
    eprintln!(
        "balance: band {} drops {:.1}% (paper's 0.51..0.61 would drop {:.1}%; cosines {})",
        settings.band,
        100.0 * summary.applied.dropped_fraction,
        100.0 * summary.paper_band.dropped_fraction,
        describe(&finite)
    );
    // 5. One row per paired image, in the source's order (a second pass over it).
    let mut at = vec![u32::MAX; n];
    for (j, &i) in kept.iter().enumerate() {
        at[i as usize] = j as u32;
    }
    let mut out = JsonlWriter::create(&part.path("samples.jsonl"))?;
    for (i, r) in source.all().enumerate() {
        let (p, line, g) = r?;
        let c = cosines[i];
        let j = at[i] as usize;
        let in_band = j != u32::MAX as usize;
        out.write(&BalancedRow {
            part: p,
            line,
            image_id: g.pair.image.id,
            cosine: c.is_finite().then_some(c),
            scored_text: if on_text1[i] { "text1" } else { "syn_text" }.into(),
            verdict: c.is_finite().then(|| balance::verdict(c, bounds)),
            cluster: in_band.then(|| assign[j]),
            rank: in_band.then(|| ranks[j]),
            random_rank: in_band.then(|| random[j]),
        })?;
    }
    out.finish()?;
    realsyn_io::npy::write_npy(&part.path("image_centroids.npy"), &km.centroids, &[k, d])?;
    std::fs::write(
        part.path("balance.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

/// The cosines scored so far and the image-embedding file being written.
struct Scoring {
    n: usize,
    /// Created with the first chunk (the width is the text tower's).
    writer: Option<(NpyRowWriter<f32>, usize)>,
    path: PathBuf,
    /// NaN where the image could not be embedded.
    cosines: Vec<f32>,
    on_text1: Vec<bool>,
    bar: realsyn_data::progress::ProgressBar,
}

impl Scoring {
    fn score(
        &mut self,
        store: &Path,
        reuse: Option<&DedupEmbeddings>,
        encoder: &mut dyn DualEmbedder,
        // (dedup-images row, image, scored text, whether that text is text1)
        chunk: Vec<(usize, ImageRow, String, bool)>,
    ) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let images: Vec<(usize, ImageRow)> = chunk
            .iter()
            .map(|(row, img, _, _)| (*row, img.clone()))
            .collect();
        let image_emb = match reuse {
            Some(r) => r.lookup(&images.iter().map(|(row, _)| *row).collect::<Vec<_>>()),
            None => embed_images(store, &images, encoder)?,
        };
        let texts: Vec<&str> = chunk.iter().map(|(_, _, t, _)| t.as_str()).collect();
        let mut text_emb = realsyn_io::Embeddings::default();
        for batch in texts.chunks(EMBED_BATCH) {
            text_emb.extend(&TextEmbedderRef(encoder).embed(batch)?)?;
        }
        let d = text_emb.width();
        if self.writer.is_none() {
            self.writer = Some((NpyRowWriter::create(&self.path, self.n, d)?, d));
        }
        let (writer, _) = self.writer.as_mut().expect("created above");
        let mut rows: Vec<f32> = Vec::with_capacity(chunk.len() * d);
        for (i, (_, _, _, on_text1)) in chunk.iter().enumerate() {
            let img = image_emb[i].as_ref().ok().filter(|e| e.len() == d);
            match img {
                Some(e) => rows.extend_from_slice(e),
                None => rows.extend(std::iter::repeat_n(0.0, d)),
            }
            self.cosines
                .push(img.map_or(f32::NAN, |e| dot_normalised(e, text_emb.row(i))));
            self.on_text1.push(*on_text1);
        }
        writer.write_rows(&rows)?;
        self.bar.inc(chunk.len() as u64);
        Ok(())
    }
}

/// The finished balance of a store: its rows and summary.
pub fn open(store: &Path) -> Result<(Vec<BalancedRow>, BalanceSummary)> {
    let part = complete_parts(&store.join(BALANCE))
        .context("run `realsyn build balance` first")?
        .remove(0);
    let rows = iter_jsonl(&part.join("samples.jsonl")).collect::<Result<Vec<_>>>()?;
    let summary = serde_json::from_slice(&std::fs::read(part.join("balance.json"))?)
        .context("balance.json")?;
    Ok((rows, summary))
}

/// min / median / max of some cosines, for messages.
fn describe(c: &[f32]) -> String {
    let mut s = c.to_vec();
    s.sort_by(f32::total_cmp);
    format!(
        "min {:.3}, median {:.3}, max {:.3}",
        balance::quantile(&s, 0.0),
        balance::quantile(&s, 0.5),
        balance::quantile(&s, 1.0)
    )
}

fn dot_normalised(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-12)
}

/// The text tower of a dual encoder (both traits name `embed`).
struct TextEmbedderRef<'a>(&'a mut dyn DualEmbedder);

impl TextEmbedderRef<'_> {
    fn embed(&mut self, texts: &[&str]) -> Result<realsyn_io::Embeddings> {
        crate::embed::TextEmbedder::embed(self.0, texts)
    }
}

/// dedup-images' embeddings (when they came from the pairing encoder), read at the
/// row retrieve recorded for each image (`PairRow::image_row`).
struct DedupEmbeddings {
    emb: NpyMatrix,
}

impl DedupEmbeddings {
    fn open(store: &Path) -> Result<Self> {
        let dir = complete_parts(&store.join(DEDUP_IMAGES))?.remove(0);
        let emb = NpyMatrix::open(&dir.join("image_embeddings.npy"))
            .context("dedup-images kept no image embeddings")?;
        Ok(Self { emb })
    }

    fn lookup(&self, rows: &[usize]) -> Vec<crate::retrieve::stage::Embedded> {
        rows.iter()
            .map(|&i| {
                if i < self.emb.rows() {
                    Ok(self.emb.read_rows(i..i + 1))
                } else {
                    Err("image not among dedup-images' rows")
                }
            })
            .collect()
    }
}
