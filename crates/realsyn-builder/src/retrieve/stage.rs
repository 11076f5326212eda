//! Stage `retrieve`: the paper's hierarchical retrieval (§3.2, Fig. 3): every kept
//! image gets the `texts_per_image` (3) most relevant kept sentences of the whole
//! corpus. Image embeddings come from the pairing dual encoder (reused from
//! dedup-images when they came from the same encoder, computed here otherwise);
//! `cluster::ivf::search` probes the nearest text clusters and runs one GEMM per
//! cluster.
//!
//! Fans out over images (`--shard i/N`: image row r belongs to part r mod N); every
//! part reads the same clusters, memory-mapped.
//!
//! Output per part: `pairs.jsonl`, one row per paired image: the image row of
//! dedup-images, the clusters it searched with their centroid cosines, and its
//! texts, best first, each with its cosine, cluster, sentence id and provenance.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use realsyn_io::npy::NpyMatrix;
use serde::{Deserialize, Serialize};

use crate::cluster::ivf::{self, InvertedLists};
use crate::cluster::kmeans::normalise_rows;
use crate::cluster::search::VectorSearch;
use crate::cluster::stage::Clusters;
use crate::embed::ImageEmbedder;
use crate::extract::stage::{ImageRow, SentenceRow};
use crate::store::funnel::Funnel;
use crate::store::manifest::{Manifest, PairingSettings};
use crate::store::shard::{PartWriter, ShardSpec, complete_parts};
use crate::store::{DEDUP_IMAGES, JsonlWriter, RETRIEVE, read_parts, write_funnel};

const EMBED_BATCH: usize = 64;

/// One retrieved sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievedText {
    pub text: String,
    pub cosine: f32,
    pub cluster: u32,
    /// Row of `cluster-text/.../sentences.jsonl`.
    pub sentence_id: i64,
    pub doc_id: String,
    pub doc_url: Option<String>,
    /// The text item's index in its document, and the sentence's in the item.
    pub position: usize,
    pub sentence: usize,
}

/// One image with its retrieved texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRow {
    #[serde(flatten)]
    pub image: ImageRow,
    /// The image's row in dedup-images' `images.jsonl`, which is also its row of
    /// `image_embeddings.npy`: balance reads the embedding there instead of keeping
    /// an id -> row map of every image.
    pub image_row: usize,
    /// The text clusters searched, nearest first: (cluster, centroid cosine).
    pub clusters: Vec<(u32, f32)>,
    pub texts: Vec<RetrievedText>,
}

/// Whether dedup-images' embeddings come from the pairing encoder.
pub fn reuses_image_embeddings(m: &Manifest) -> bool {
    match (&m.semantic, &m.pairing) {
        (Some(i), Some(p)) => i.encoder == p.encoder,
        _ => false,
    }
}

impl InvertedLists for Clusters {
    fn width(&self) -> usize {
        self.summary.width
    }
    fn centroids(&self) -> &[f32] {
        &self.centroids
    }
    fn list_len(&self, c: usize) -> usize {
        self.size(c)
    }
    fn list(&self, c: usize) -> (std::borrow::Cow<'_, [f32]>, &[i64]) {
        let r = self.rows(c);
        (self.embeddings.rows_f32(r.clone()), &self.ids.as_slice()[r])
    }
}

pub fn run(
    store: &Path,
    m: &Manifest,
    settings: &PairingSettings,
    shard: ShardSpec,
    embedder: Option<&mut dyn ImageEmbedder>,
    search: &dyn VectorSearch,
) -> Result<Option<Funnel>> {
    let images_dir = complete_parts(&store.join(DEDUP_IMAGES))
        .context("retrieve pairs the images dedup-images keeps: run dedup-images first")?
        .remove(0);
    let clusters = open_clusters(store, settings)?;
    let Some(part) = PartWriter::begin(&store.join(RETRIEVE), shard)? else {
        return Ok(None);
    };
    // This part's image rows.
    let mut rows: Vec<(usize, ImageRow)> = Vec::new();
    read_parts(&[images_dir.clone()], "images.jsonl", |i, row: ImageRow| {
        if shard.owns(i) {
            rows.push((i, row));
        }
        Ok(())
    })?;
    let mut funnel = Funnel::default();
    let name = "hierarchical retrieval";
    // Their embeddings (None: the image could not be embedded, with the reason).
    let embedded: Vec<Embedded> = if reuses_image_embeddings(m) {
        let emb = NpyMatrix::open(&images_dir.join("image_embeddings.npy"))
            .context("dedup-images kept no image embeddings (a store from an older realsyn?)")?;
        rows.iter()
            .map(|(i, _)| {
                if *i >= emb.rows() {
                    bail!(
                        "dedup-images has {} embeddings for more image rows",
                        emb.rows()
                    );
                }
                Ok(Ok(emb.read_rows(*i..*i + 1)))
            })
            .collect::<Result<_>>()?
    } else {
        let embedder = embedder.ok_or_else(|| {
            anyhow::anyhow!(
                "retrieve needs the image tower of {} loaded",
                settings.encoder
            )
        })?;
        embed_images(store, &rows, embedder)?
    };
    let paired = pair(&clusters, settings, embedded, search)?;
    let mut out = JsonlWriter::create(&part.path("pairs.jsonl"))?;
    for ((image_row, image), p) in rows.into_iter().zip(paired) {
        let step = funnel.step(name, "images");
        match p {
            Err(reason) => step.drop(reason),
            Ok((clusters, texts)) => {
                step.pass();
                out.write(&PairRow {
                    image,
                    image_row,
                    clusters,
                    texts,
                })?;
            }
        }
    }
    out.finish()?;
    funnel.step(name, "images");
    write_funnel(&part.path("funnel.json"), &funnel)?;
    part.commit()?;
    Ok(Some(funnel))
}

/// What one image got: the clusters it searched and its texts, or why it got none.
pub type Paired = Result<(Vec<(u32, f32)>, Vec<RetrievedText>), &'static str>;

/// Hierarchical retrieval for a batch of image embeddings (or the reasons they are
/// missing): search, then read the named sentences once each, by seek.
pub fn pair(
    clusters: &Clusters,
    settings: &PairingSettings,
    embedded: Vec<Embedded>,
    search: &dyn VectorSearch,
) -> Result<Vec<Paired>> {
    let d = clusters.width();
    let mut queries = Vec::new();
    let mut query_of = vec![usize::MAX; embedded.len()];
    let mut reasons: Vec<Option<&'static str>> = vec![None; embedded.len()];
    for (j, e) in embedded.iter().enumerate() {
        match e {
            Ok(v) if v.len() != d => bail!(
                "image embeddings have width {}, the text clusters {d}: they come from different encoders",
                v.len()
            ),
            Ok(v) if crate::cluster::usable_row(v) => {
                query_of[j] = queries.len() / d;
                queries.extend_from_slice(v);
            }
            Ok(_) => reasons[j] = Some("embedding not finite or zero"),
            Err(r) => reasons[j] = Some(r),
        }
    }
    drop(embedded);
    normalise_rows(&mut queries, d);
    let k = settings.texts_per_image;
    let found = ivf::search(clusters, &queries, settings.probe, k, search)?;
    let mut wanted: Vec<usize> = found
        .iter()
        .flat_map(|f| f.hits.iter().map(|h| h.id as usize))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    wanted.sort_unstable();
    let sentences: BTreeMap<usize, _> = wanted
        .iter()
        .copied()
        .zip(clusters.sentences(&wanted)?)
        .collect();
    Ok((0..query_of.len())
        .map(|j| {
            if let Some(r) = reasons[j] {
                return Err(r);
            }
            let f = &found[query_of[j]];
            if f.hits.len() < k {
                return Err("fewer sentences in the corpus than texts per image");
            }
            let texts = f
                .hits
                .iter()
                .map(|h| {
                    let s: &SentenceRow = &sentences[&(h.id as usize)];
                    RetrievedText {
                        text: s.text.clone(),
                        cosine: h.score,
                        cluster: h.cluster,
                        sentence_id: h.id,
                        doc_id: s.doc_id.clone(),
                        doc_url: s.doc_url.clone(),
                        position: s.position,
                        sentence: s.sentence,
                    }
                })
                .collect();
            Ok((f.clusters.clone(), texts))
        })
        .collect())
}

/// The store's text clusters, checked to come from the pairing encoder.
pub fn open_clusters(store: &Path, settings: &PairingSettings) -> Result<Clusters> {
    let clusters = Clusters::open(store)?;
    if clusters.summary.encoder != settings.encoder.to_string() {
        bail!(
            "the text clusters were embedded with {:?} and the images would be with {:?}: \
             image and text embeddings must come from one dual encoder",
            clusters.summary.encoder,
            settings.encoder.to_string()
        );
    }
    Ok(clusters)
}

/// An image embedding, or why there is none.
pub type Embedded = Result<Vec<f32>, &'static str>;

/// Decoded images embedded `EMBED_BATCH` at a time (never a whole shard held at
/// once), each row landing in the slot it was pushed for.
pub struct BatchedEmbedding<'e> {
    embedder: &'e mut dyn ImageEmbedder,
    batch: Vec<(usize, image::DynamicImage)>,
    out: Vec<Embedded>,
    bar: realsyn_data::progress::ProgressBar,
}

impl<'e> BatchedEmbedding<'e> {
    /// `slots` slots holding `missing` until filled; `total` sizes the progress bar.
    pub fn new(
        embedder: &'e mut dyn ImageEmbedder,
        slots: usize,
        missing: &'static str,
        total: u64,
    ) -> Self {
        Self {
            embedder,
            batch: Vec::with_capacity(EMBED_BATCH),
            out: vec![Err(missing); slots],
            bar: realsyn_data::progress::bar(total, "embed images"),
        }
    }

    /// A new slot, holding `initial` until filled.
    pub fn add_slot(&mut self, initial: Embedded) -> usize {
        self.out.push(initial);
        self.out.len() - 1
    }

    /// Slot `j` gets the embedding of `decoded`, or its reason.
    pub fn push(
        &mut self,
        j: usize,
        decoded: Result<image::DynamicImage, &'static str>,
    ) -> Result<()> {
        match decoded {
            Ok(img) => self.batch.push((j, img)),
            Err(r) => self.out[j] = Err(r),
        }
        if self.batch.len() == EMBED_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let (js, imgs): (Vec<usize>, Vec<image::DynamicImage>) = self.batch.drain(..).unzip();
        let e = self
            .embedder
            .embed(&imgs)
            .with_context(|| self.embedder.name())?;
        if e.rows() != js.len() {
            bail!(
                "{} gave {} rows for {} images",
                self.embedder.name(),
                e.rows(),
                js.len()
            );
        }
        for (r, j) in js.into_iter().enumerate() {
            self.out[j] = Ok(e.row(r).to_vec());
        }
        self.bar.inc(imgs.len() as u64);
        Ok(())
    }

    /// Embed what is left; the slots in order.
    pub fn finish(mut self) -> Result<Vec<Embedded>> {
        self.flush()?;
        self.bar.finish_and_clear();
        Ok(self.out)
    }
}

/// Embed these images with `embedder`, reading them from the extract tar shards of
/// the folder their rows name; an image that cannot be read or decoded gets its
/// reason. Results in row order.
pub fn embed_images(
    store: &Path,
    rows: &[(usize, ImageRow)],
    embedder: &mut dyn ImageEmbedder,
) -> Result<Vec<Embedded>> {
    let mut embedded = BatchedEmbedding::new(
        embedder,
        rows.len(),
        "image not in its tar shard",
        rows.len() as u64,
    );
    for_each_image(store, rows, |j, decoded| embedded.push(j, decoded))?;
    embedded.finish()
}

/// These images decoded (or why not), in row order: for small batches.
pub fn decode_images(
    store: &Path,
    rows: &[(usize, ImageRow)],
) -> Result<Vec<Result<image::DynamicImage, &'static str>>> {
    let mut out: Vec<Result<image::DynamicImage, &'static str>> =
        vec![Err("image not in its tar shard"); rows.len()];
    for_each_image(store, rows, |j, decoded| {
        out[j] = decoded;
        Ok(())
    })?;
    Ok(out)
}

/// Visit each row's image (by position in `rows`), one tar shard at a time.
fn for_each_image(
    store: &Path,
    rows: &[(usize, ImageRow)],
    mut visit: impl FnMut(usize, Result<image::DynamicImage, &'static str>) -> Result<()>,
) -> Result<()> {
    for_each_image_bytes(store, rows, |j, bytes| {
        let decoded =
            bytes.and_then(|b| crate::extract::images::decode(b).map_err(|_| "image unreadable"));
        visit(j, decoded)
    })
}

/// Visit each row's stored image bytes (by position in `rows`), reading only the
/// tars that hold them, each once; rows whose image is not found are not visited.
/// A row that names its tar (`ImageRow::tar`) costs a read of that tar; one from a
/// store written before that field, a scan of its folder.
pub fn for_each_image_bytes(
    store: &Path,
    rows: &[(usize, ImageRow)],
    mut visit: impl FnMut(usize, Result<&[u8], &'static str>) -> Result<()>,
) -> Result<()> {
    use realsyn_data::image::IMAGE_EXTENSIONS;
    use realsyn_data::wds::{SkipCounter, read_shard};
    // (folder, tar) -> positions in `rows`, in tar order.
    let mut by_tar: BTreeMap<(&str, Option<&str>), Vec<usize>> = BTreeMap::new();
    for (j, (_, r)) in rows.iter().enumerate() {
        by_tar
            .entry((r.shard.as_str(), r.tar.as_deref()))
            .or_default()
            .push(j);
    }
    let skips = SkipCounter::new();
    for ((folder, tar), js) in by_tar {
        let want: BTreeMap<&str, usize> = js.iter().map(|&j| (rows[j].1.id.as_str(), j)).collect();
        let tars = match tar {
            Some(t) => vec![store.join(folder).join(t)],
            None => crate::store::tars_in(&store.join(folder))?,
        };
        for sample in tars.iter().flat_map(|t| read_shard(t, &skips)) {
            let Some(&j) = want.get(sample.key.as_str()) else {
                continue;
            };
            let bytes = sample
                .first_of(IMAGE_EXTENSIONS)
                .map(|b| b.as_ref())
                .ok_or("image unreadable");
            visit(j, bytes)?;
        }
    }
    Ok(())
}
