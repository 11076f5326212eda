//! Stage `cluster-text`: the text side of the paper's hierarchical retrieval (§3.2,
//! Fig. 3, "Text Semantic Clustering"). Every kept sentence is embedded with the
//! pairing dual encoder (or the dedup-text-semantic embeddings are reused when they
//! came from the same encoder), k-means groups them (spherical, as faiss; two-level
//! for large K), and the sentences are written back grouped by cluster, an
//! inverted-file layout that `retrieve` reads one cluster at a time.
//!
//! Output, one part:
//! - `centroids.npy` [K, d] f32, unit rows;
//! - `offsets.npy` [K+1] i64: cluster c holds grouped rows offsets[c]..offsets[c+1];
//! - `text_embeddings.npy` [n, d] (f32) and `sentence_ids.npy` [n] i64, grouped by
//!   cluster: row r of both is sentence `sentence_ids[r]` of `sentences.jsonl`;
//! - `sentences.jsonl` (the kept sentences in corpus order, one table for the later
//!   stages) and `sentence_offsets.npy` [n+1] i64, the byte offset of each line, so
//!   a sentence is read by id with one seek;
//! - `clusters.json`: K, levels, objective per iteration, size statistics, encoder.
//!
//! Resume: embeddings computed here and the k-means state of every iteration are
//! kept in `cluster-text/work/` until the part is committed, so a killed run picks
//! up at the last iteration and ends with the same bytes.
//!
//! Readers (`Clusters`) map the ids and line offsets instead of loading them.
//!
//! Memory: the training sample (at most K x 256 rows, capped by
//! `MAX_TRAINING_ROWS`), one u32 cluster id per sentence, and the offsets; the
//! embeddings themselves are memory-mapped and read block by block.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use realsyn_io::npy::{NpyI64, NpyMatrix, NpyRowWriter, read_npy, write_npy};
use serde::{Deserialize, Serialize};

use crate::cluster::fit::{assign_all, fit};
use crate::cluster::kmeans::{self, Checkpoint, KMeans, KMeansParams};
use crate::cluster::search::VectorSearch;
use crate::embed::TextEmbedder;
use crate::extract::stage::SentenceRow;
use crate::store::funnel::Funnel;
use crate::store::manifest::{Manifest, PairingSettings};
use crate::store::shard::{PartWriter, ShardSpec, complete_parts};
use crate::store::{
    CLUSTER_TEXT, DEDUP_TEXT, DEDUP_TEXT_SEMANTIC, iter_parts, read_funnel, write_funnel,
};

/// The paper's ratio: 0.84B sentences into 2M clusters.
pub use crate::cluster::DEFAULT_SENTENCES_PER_CLUSTER;
pub use crate::cluster::fit::{MAX_TRAINING_ROWS, TWO_LEVEL_FROM};
const EMBED_BATCH: usize = 256;
/// Rows checked for finite values per read.
const SCAN_BLOCK: usize = 1 << 14;

/// What `clusters.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// The pairing encoder, as the manifest names it; `retrieve` refuses image
    /// embeddings from another.
    pub encoder: String,
    pub embeddings: String,
    pub sentences: usize,
    pub clustered: usize,
    pub k: usize,
    pub width: usize,
    pub levels: usize,
    /// Two-level only: the coarse clusters each sentence's fine centroid was
    /// sought in (absent: among all centroids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign_probe: Option<usize>,
    pub training_rows: usize,
    pub params: KMeansParams,
    pub objective: Vec<f64>,
    pub splits: Vec<usize>,
    pub sizes: SizeStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeStats {
    pub min: usize,
    pub median: usize,
    pub mean: f64,
    pub max: usize,
    pub empty: usize,
    /// Clusters by size: `[upper bound, count]` for powers of two.
    pub histogram: Vec<(usize, usize)>,
}

impl SizeStats {
    pub fn of(sizes: &[usize]) -> Self {
        let mut s = sizes.to_vec();
        s.sort_unstable();
        let mut histogram: Vec<(usize, usize)> = Vec::new();
        for &x in &s {
            let bound = x.max(1).next_power_of_two();
            match histogram.last_mut() {
                Some((b, n)) if *b == bound => *n += 1,
                _ => histogram.push((bound, 1)),
            }
        }
        Self {
            min: s.first().copied().unwrap_or(0),
            median: s.get(s.len() / 2).copied().unwrap_or(0),
            mean: s.iter().sum::<usize>() as f64 / s.len().max(1) as f64,
            max: s.last().copied().unwrap_or(0),
            empty: s.iter().filter(|&&x| x == 0).count(),
            histogram,
        }
    }
}

/// The kept sentences the pairing stages read: dedup-text-semantic's single part
/// when the store runs it, else every dedup-text part.
pub fn sentence_parts(store: &Path, m: &Manifest) -> Result<Vec<PathBuf>> {
    let stage = if m.text_semantic.is_some() {
        DEDUP_TEXT_SEMANTIC
    } else {
        DEDUP_TEXT
    };
    let parts = complete_parts(&store.join(stage))
        .with_context(|| format!("cluster-text reads the sentences {stage} keeps"))?;
    Ok(parts)
}

/// Whether dedup-text-semantic's embeddings come from the pairing encoder.
pub fn reuses_text_embeddings(m: &Manifest) -> bool {
    match (&m.text_semantic, &m.pairing) {
        (Some(t), Some(p)) => t.encoder == p.encoder,
        _ => false,
    }
}

pub fn run(
    store: &Path,
    m: &Manifest,
    settings: &PairingSettings,
    embedder: Option<&mut dyn TextEmbedder>,
    search: &dyn VectorSearch,
) -> Result<Option<Funnel>> {
    let dir = store.join(CLUSTER_TEXT);
    let parts = sentence_parts(store, m)?;
    let Some(part) = PartWriter::begin(&dir, ShardSpec::default())? else {
        return Ok(None);
    };
    let work = dir.join("work");
    std::fs::create_dir_all(&work)?;
    // 1. The embeddings, in corpus order (reused, or computed into work/).
    let (emb_path, embeddings) = if reuses_text_embeddings(m) {
        let p = parts[0].join("text_embeddings.npy");
        (
            p,
            "reused from dedup-text-semantic (same encoder)".to_string(),
        )
    } else {
        let embedder = embedder.ok_or_else(|| {
            anyhow::anyhow!(
                "cluster-text needs the text tower of {} loaded",
                settings.encoder
            )
        })?;
        let p = work.join("text_embeddings.npy");
        if !p.exists() {
            embed_sentences(&parts, embedder, &p)?;
        }
        (p, format!("computed with {}", embedder.name()))
    };
    let emb = NpyMatrix::open(&emb_path).with_context(|| {
        format!(
            "the sentence embeddings (a store from an older realsyn? rerun {CLUSTER_TEXT} on a new store)"
        )
    })?;
    let (n, d) = (emb.rows(), emb.width());
    let total: u64 = parts
        .iter()
        .map(|p| Ok(read_funnel(p)?.steps.last().map_or(0, |s| s.output)))
        .sum::<Result<u64>>()?;
    if n as u64 != total {
        bail!(
            "{}: {n} embeddings for {total} sentences; the store changed under this stage",
            emb_path.display()
        );
    }
    // 2. Rows that can be clustered: finite, non-zero.
    let mut valid = vec![true; n];
    for b in (0..n).step_by(SCAN_BLOCK) {
        let e = (b + SCAN_BLOCK).min(n);
        for (i, row) in emb.read_rows(b..e).chunks(d).enumerate() {
            valid[b + i] = crate::cluster::usable_row(row);
        }
    }
    let rows: Vec<usize> = (0..n).filter(|&i| valid[i]).collect();
    if rows.is_empty() {
        bail!("no sentence to cluster ({n} sentences, none with a finite embedding)");
    }
    let k = match settings.clusters {
        Some(k) if k > rows.len() => bail!(
            "--clusters {k} is more than the {} sentences to cluster; use fewer clusters",
            rows.len()
        ),
        Some(k) => k,
        None => (rows.len() as f64 / settings.sentences_per_cluster.max(1) as f64).round() as usize,
    }
    .max(1);
    let params = KMeansParams {
        k,
        iterations: settings.iterations,
        seed: settings.seed,
        max_points_per_centroid: settings.max_points_per_centroid,
    };
    let two_level = settings.two_level.unwrap_or(k >= TWO_LEVEL_FROM);
    // 3. Train on a sample (faiss's rule, capped), gathered from the map.
    let read = |i: usize, out: &mut Vec<f32>| emb.push_row(rows[i], out);
    eprintln!(
        "cluster-text: {} sentences -> {k} clusters ({}, {} iterations, GEMMs on {})",
        rows.len(),
        if two_level { "two-level" } else { "flat" },
        params.iterations,
        search.name()
    );
    let mut ckpt = FileCheckpoint(work.join("kmeans"));
    let fitted = fit(rows.len(), d, &params, two_level, &read, search, &mut ckpt)?;
    let km = fitted.km;
    let k = km.k();
    // 4. Assign every clusterable row to its nearest centroid, block by block.
    let mut assign = vec![u32::MAX; n];
    let nearest = assign_all(
        &km,
        rows.len(),
        &read,
        settings.assign_probe.filter(|_| two_level),
        search,
        "assign",
    )?;
    for (&i, c) in rows.iter().zip(nearest) {
        assign[i] = c;
    }
    // 5. The inverted-file layout: rows grouped by cluster, in corpus order within.
    let mut sizes = vec![0usize; k];
    for &c in assign.iter().filter(|&&c| c != u32::MAX) {
        sizes[c as usize] += 1;
    }
    let mut offsets = vec![0i64; k + 1];
    for c in 0..k {
        offsets[c + 1] = offsets[c] + sizes[c] as i64;
    }
    let mut order = vec![0u32; rows.len()];
    let mut next: Vec<usize> = offsets[..k].iter().map(|&o| o as usize).collect();
    for (i, &c) in assign.iter().enumerate() {
        if c != u32::MAX {
            order[next[c as usize]] = i as u32;
            next[c as usize] += 1;
        }
    }
    drop(assign);
    let mut grouped =
        NpyRowWriter::<f32>::create(&part.path("text_embeddings.npy"), rows.len(), d)?;
    let mut row = Vec::with_capacity(d);
    for &i in &order {
        row.clear();
        emb.push_row(i as usize, &mut row);
        kmeans::normalise_rows(&mut row, d);
        grouped.write_rows(&row)?;
    }
    grouped.finish()?;
    let ids: Vec<i64> = order.iter().map(|&i| i as i64).collect();
    write_npy(&part.path("sentence_ids.npy"), &ids, &[ids.len()])?;
    write_npy(&part.path("offsets.npy"), &offsets, &[k + 1])?;
    write_npy(&part.path("centroids.npy"), &km.centroids, &[k, d])?;
    // 6. The sentence table, with byte offsets for reads by id.
    write_sentence_table(
        &parts,
        &part.path("sentences.jsonl"),
        &part.path("sentence_offsets.npy"),
        n,
    )?;
    let summary = ClusterSummary {
        encoder: settings.encoder.to_string(),
        embeddings,
        sentences: n,
        clustered: rows.len(),
        k,
        width: d,
        levels: if two_level { 2 } else { 1 },
        assign_probe: settings.assign_probe.filter(|_| two_level),
        training_rows: fitted.training_rows,
        params,
        objective: km.objective.clone(),
        splits: km.splits.clone(),
        sizes: SizeStats::of(&sizes),
    };
    std::fs::write(
        part.path("clusters.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    let mut funnel = Funnel::default();
    let step = funnel.step("text clustering", "sentences");
    for &v in &valid {
        step.record((!v).then_some("embedding not finite or zero"));
    }
    write_funnel(&part.path("funnel.json"), &funnel)?;
    drop(emb);
    part.commit()?;
    std::fs::remove_dir_all(&work).ok();
    eprintln!(
        "cluster-text: {k} clusters, sizes min {} median {} max {}, {} empty",
        summary.sizes.min, summary.sizes.median, summary.sizes.max, summary.sizes.empty
    );
    Ok(Some(funnel))
}

/// Embed every kept sentence into `out` (f32 `.npy`, streamed, corpus order).
fn embed_sentences(parts: &[PathBuf], embedder: &mut dyn TextEmbedder, out: &Path) -> Result<()> {
    let total = parts
        .iter()
        .map(|p| Ok(read_funnel(p)?.steps.last().map_or(0, |s| s.output)))
        .sum::<Result<u64>>()?;
    let bar = realsyn_data::progress::bar(total, "embed text");
    let texts = iter_parts::<SentenceRow>(parts, "sentences.jsonl").map(|r| r.map(|r| r.text));
    let mut writer: Option<NpyRowWriter<f32>> = None;
    let name = embedder.name();
    realsyn_io::encode_in_batches_to(
        texts,
        EMBED_BATCH,
        |batch: &[String]| {
            let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
            embedder.embed(&texts)
        },
        |rows| {
            let w = match &mut writer {
                Some(w) => w,
                None => writer.insert(NpyRowWriter::create(out, total as usize, rows.width())?),
            };
            bar.inc(rows.rows() as u64);
            w.write_rows(rows.as_slice())
        },
    )
    .with_context(|| name.clone())?;
    bar.finish_and_clear();
    match writer {
        Some(w) => w.finish(),
        None => bail!("no sentences to embed"),
    }
}

/// Concatenate the parts' sentences into one table and record each line's offset.
fn write_sentence_table(parts: &[PathBuf], table: &Path, offsets: &Path, n: usize) -> Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(table)?);
    let mut at = Vec::with_capacity(n + 1);
    let mut pos = 0i64;
    for p in parts {
        let bytes = std::fs::read(p.join("sentences.jsonl"))?;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            at.push(pos);
            w.write_all(line)?;
            pos += line.len() as i64;
        }
    }
    at.push(pos);
    w.flush()?;
    if at.len() != n + 1 {
        bail!("{} sentence lines for {n} embeddings", at.len() - 1);
    }
    write_npy(offsets, &at, &[at.len()])
}

/// One cluster-text part, opened for reading: centroids, the grouped embeddings
/// (memory-mapped), their sentence ids and the sentence table.
pub struct Clusters {
    pub dir: PathBuf,
    pub summary: ClusterSummary,
    pub centroids: Vec<f32>,
    pub offsets: Vec<i64>,
    /// Grouped row -> sentence id, memory-mapped.
    pub ids: NpyI64,
    pub embeddings: NpyMatrix,
    sentence_offsets: NpyI64,
}

impl Clusters {
    pub fn open(store: &Path) -> Result<Self> {
        let parts = complete_parts(&store.join(CLUSTER_TEXT))
            .context("retrieval reads the text clusters: run cluster-text first")?;
        let dir = parts[0].clone();
        let summary: ClusterSummary =
            serde_json::from_slice(&std::fs::read(dir.join("clusters.json"))?)
                .with_context(|| format!("{}/clusters.json", dir.display()))?;
        let (centroids, shape) = read_npy::<f32>(&dir.join("centroids.npy"))?;
        let (offsets, _) = read_npy::<i64>(&dir.join("offsets.npy"))?;
        let ids = NpyI64::open(&dir.join("sentence_ids.npy"))?;
        let sentence_offsets = NpyI64::open(&dir.join("sentence_offsets.npy"))?;
        let embeddings = NpyMatrix::open(&dir.join("text_embeddings.npy"))?;
        if shape != [summary.k, summary.width]
            || offsets.len() != summary.k + 1
            || ids.len() != embeddings.rows()
            || sentence_offsets.len() != summary.sentences + 1
            || embeddings.width() != summary.width
        {
            bail!(
                "{}: the cluster files disagree (k, width, rows)",
                dir.display()
            );
        }
        Ok(Self {
            dir,
            summary,
            centroids,
            offsets,
            ids,
            embeddings,
            sentence_offsets,
        })
    }

    pub fn k(&self) -> usize {
        self.summary.k
    }

    pub fn size(&self, c: usize) -> usize {
        (self.offsets[c + 1] - self.offsets[c]) as usize
    }

    /// Cluster `c`'s grouped rows.
    pub fn rows(&self, c: usize) -> std::ops::Range<usize> {
        self.offsets[c] as usize..self.offsets[c + 1] as usize
    }

    /// The sentences with these ids (rows of `sentences.jsonl`), by seek.
    pub fn sentences(&self, ids: &[usize]) -> Result<Vec<SentenceRow>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(self.dir.join("sentences.jsonl"))?;
        let mut out = Vec::with_capacity(ids.len());
        let mut buf = Vec::new();
        let at = self.sentence_offsets.as_slice();
        for &i in ids {
            let (a, b) = (at[i], at[i + 1]);
            buf.resize((b - a) as usize, 0);
            f.seek(SeekFrom::Start(a as u64))?;
            f.read_exact(&mut buf)?;
            out.push(serde_json::from_slice(&buf).with_context(|| format!("sentence {i}"))?);
        }
        Ok(out)
    }
}

/// k-means state in `work/kmeans/`: `NAME-ITER.npy` (centroids) and `NAME.json`
/// (iteration, the centroid file, objective, splits), written each iteration.
struct FileCheckpoint(PathBuf);

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    iteration: usize,
    d: usize,
    /// The file holding this iteration's centroids.
    centroids: String,
    objective: Vec<f64>,
    splits: Vec<usize>,
}

impl Checkpoint for FileCheckpoint {
    fn load(&mut self, name: &str) -> Result<Option<(usize, KMeans)>> {
        let meta = self.0.join(format!("{name}.json"));
        let Ok(bytes) = std::fs::read(&meta) else {
            return Ok(None);
        };
        let m: CheckpointMeta = serde_json::from_slice(&bytes)?;
        let (centroids, _) = read_npy::<f32>(&self.0.join(&m.centroids))?;
        Ok(Some((
            m.iteration,
            KMeans {
                d: m.d,
                centroids,
                objective: m.objective,
                splits: m.splits,
                coarse: None,
            },
        )))
    }

    fn save(&mut self, name: &str, iteration: usize, s: &KMeans) -> Result<()> {
        std::fs::create_dir_all(&self.0)?;
        // Each iteration's centroids under their own name; the metadata, written
        // last and atomically, names the file, so a kill between the two writes
        // leaves the previous iteration whole.
        let file = format!("{name}-{iteration:05}.npy");
        write_npy(&self.0.join(&file), &s.centroids, &[s.k(), s.d])?;
        let meta = CheckpointMeta {
            iteration,
            d: s.d,
            centroids: file,
            objective: s.objective.clone(),
            splits: s.splits.clone(),
        };
        let path = self.0.join(format!("{name}.json"));
        let previous = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<CheckpointMeta>(&b).ok());
        realsyn_io::fs::write_atomic(&path, &serde_json::to_vec(&meta)?)?;
        if let Some(p) = previous.filter(|p| p.centroids != meta.centroids) {
            std::fs::remove_file(self.0.join(p.centroids)).ok();
        }
        Ok(())
    }
}
