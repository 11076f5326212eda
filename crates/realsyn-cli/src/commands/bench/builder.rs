//! The builder's hot paths on synthetic or real inputs; the peers (NLTK Punkt, PIL,
//! faiss, brute force) run in `benches/{sentences,image_filter,kmeans}.sh`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Sentences {
    /// A UTF-8 text file, paragraphs separated by blank lines.
    #[arg(long)]
    text: PathBuf,
    /// Times the text is processed over.
    #[arg(long, default_value_t = 3)]
    iters: usize,
}

#[derive(clap::Args)]
pub struct ImageFilter {
    /// A folder of images (searched recursively).
    #[arg(long)]
    images: PathBuf,
    /// Passes over the folder.
    #[arg(long, default_value_t = 3)]
    iters: usize,
}

#[derive(clap::Args)]
pub struct SemanticDedup {
    /// Synthetic embeddings.
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    #[arg(long, default_value_t = 256)]
    dim: usize,
}

#[derive(clap::Args)]
pub struct Kmeans {
    /// Vectors `[n, d]` (.npy, f32 or f16).
    #[arg(long)]
    features: PathBuf,
    /// Clusters.
    #[arg(long, default_value_t = 1000)]
    k: usize,
    /// Lloyd iterations.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Where the GEMMs run: cpu (the builder's kernel, as a CPU build runs them),
    /// flex (Burn's CPU backend) or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
pub struct Retrieval {
    /// Synthetic sentence embeddings (topics of ~200 rows).
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    #[arg(long, default_value_t = 256)]
    dim: usize,
    /// Held-out queries; 0: 100 per text cluster, the paper's ratio of images to
    /// clusters.
    #[arg(long, default_value_t = 0)]
    queries: usize,
    /// Per-coordinate noise around the topic centres (1.5: a row's cosine to its topic
    /// centre is about 0.55, to another row of its topic 0.3).
    #[arg(long, default_value_t = 1.5)]
    noise: f32,
    /// Where the k-means and centroid-ranking GEMMs run (as `kmeans --device`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// k-means levels: auto (two-level from 4,096 clusters, as cluster-text), 1 or 2.
    #[arg(long, default_value = "auto")]
    levels: String,
    /// Two-level only: assign each row among the fine centroids of its N nearest
    /// coarse clusters (as `build --assign-probe`); default: among all centroids.
    #[arg(long)]
    assign_probe: Option<usize>,
    /// Also write the corpus, the first 1,000 queries and realsyn's report to this
    /// folder (`corpus.npy`, `queries.npy`, `realsyn.json`), for
    /// benches/retrieval_faiss.py to run faiss's IndexIVFFlat on the same data.
    #[arg(long)]
    dump: Option<PathBuf>,
}

/// Sentences/s of the builder's text path on one thread: Punkt, the emoji/URL/length
/// rules, the word-count pass and the entropy filter (as `benches/sentences.py`).
pub fn sentences(a: &Sentences) -> Result<()> {
    use realsyn_builder::SentenceSplitter;
    use realsyn_builder::filter::text_filters::{MIN_ENTROPY, WordCounts, rule_violation, words};
    let text = std::fs::read_to_string(&a.text)?;
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .collect();
    let splitter = SentenceSplitter::english();
    let start = Instant::now();
    let (mut n, mut kept, mut counts) = (0usize, Vec::new(), WordCounts::default());
    for _ in 0..a.iters {
        for p in &paragraphs {
            for s in splitter.sentences(p) {
                n += 1;
                let w = words(s);
                if rule_violation(s, w.len()).is_none() {
                    counts.add(&w);
                    kept.push(w);
                }
            }
        }
    }
    let info = counts.information();
    let entropy_kept = kept
        .iter()
        .filter(|w| info.entropy(w) >= MIN_ENTROPY)
        .count();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "sentences", "sentences": n, "kept": kept.len(),
            "entropy_kept": entropy_kept, "seconds": seconds, "sentences_per_s": n as f64 / seconds,
        })
    );
    Ok(())
}

/// Images/s of the extract stage's size/aspect filter: read the file, size from the
/// header only, the paper's rule (as `benches/image_filter.py` with PIL).
pub fn image_filter(a: &ImageFilter) -> Result<()> {
    use realsyn_builder::extract::images::{header, size_violation};
    let files = realsyn_builder::extract::ingest::find_files(
        &a.images,
        realsyn_data::image::IMAGE_EXTENSIONS,
    )?;
    let start = Instant::now();
    let mut kept = 0;
    for _ in 0..a.iters {
        kept = 0;
        for f in &files {
            let Ok(bytes) = std::fs::read(f) else {
                continue;
            };
            if let Ok((_, w, h)) = header(&bytes) {
                kept += size_violation(w, h).is_none() as usize;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let n = files.len() * a.iters;
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "image-filter", "images": n, "kept": kept,
            "seconds": seconds, "images_per_s": n as f64 / seconds,
        })
    );
    Ok(())
}

pub fn semantic_dedup(a: &SemanticDedup) -> Result<()> {
    use realsyn_builder::dedup::link::{
        LshParams, UnionFind, cosine_recall, link_cosine, synthetic_embeddings,
    };
    let (n, dim) = (a.n, a.dim);
    let emb = synthetic_embeddings(n, dim, 0.1, 0.97, 1);
    let mut uf = UnionFind::new(n);
    let start = Instant::now();
    let stats = link_cosine(&emb, dim, 0.95, &LshParams::default(), &mut uf);
    let comps = uf.components();
    let seconds = start.elapsed().as_secs_f64();
    let kept = {
        let mut c = comps.clone();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    // Half the queries among the planted copies, half anywhere.
    let queries: Vec<usize> = (0..500)
        .map(|i| n - 1 - i * (n / 10) / 500)
        .chain((0..500).map(|i| i * (n / 500)))
        .collect();
    let r0 = Instant::now();
    let (recall, pairs) = cosine_recall(&emb, dim, 0.95, &queries, &mut uf);
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "semantic-dedup", "n": n, "dim": dim, "seconds": seconds,
            "candidates": stats.candidates, "links": stats.links, "components": kept,
            "recall": recall, "recall_pairs": pairs, "brute_force_seconds_for_1000_rows": r0.elapsed().as_secs_f64(),
            "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

/// Spherical k-means on `--features` (an `[n, d]` f32 .npy): seconds per Lloyd
/// iteration and GFLOP/s of the assignment GEMM (2·n·K·d per iteration), beside
/// faiss-cpu in benches/kmeans.sh.
pub fn kmeans(a: &Kmeans) -> Result<()> {
    use realsyn_builder::cluster::kmeans::{self, KMeansParams, NoCheckpoint};
    let emb = realsyn_io::Embeddings::read_npy(&a.features)?;
    let (n, d) = (emb.rows(), emb.width());
    let p = KMeansParams {
        k: a.k,
        iterations: a.iters,
        ..KMeansParams::new(a.k)
    };
    let train_rows = kmeans::training_sample(n, &p).len();
    let (km, seconds) = realsyn_runtime::vector_search::with_search(&a.device, |search| {
        let start = Instant::now();
        let km = kmeans::train(emb.as_slice(), d, &p, search, &mut NoCheckpoint)?;
        Ok((km, start.elapsed().as_secs_f64()))
    })?;
    let objective = kmeans::objective(emb.as_slice(), &km.centroids, d);
    let per_iter = seconds / a.iters as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "kmeans", "n": n, "d": d, "k": a.k, "iterations": a.iters,
            "training_rows": train_rows, "seconds": seconds, "seconds_per_iteration": per_iter,
            "gflops": 2.0 * train_rows as f64 * a.k as f64 * d as f64 / per_iter / 1e9,
            "objective": objective, "threads": rayon::current_num_threads(),
            "device": a.device,
        })
    );
    Ok(())
}

/// Hierarchical retrieval against exact search on `--n` synthetic sentence
/// embeddings (`--dim`, topics of ~200 rows) clustered at the paper's ratio of 420
/// per cluster, with the paper's ratio of images to text clusters (198M / 2M, about
/// 100 queries per cluster) unless `--queries` says otherwise: recall of the exact
/// top-3 and speed-up for 1, 2, 4 and 8 probed clusters. Exact search runs on the
/// first 1,000 queries and its time is scaled to all (it is linear in queries);
/// the clustering's cost is reported apart.
pub fn retrieval(a: &Retrieval) -> Result<()> {
    use realsyn_builder::cluster::ivf::{MemoryLists, search};
    use realsyn_builder::cluster::kmeans::{self, KMeansParams, NoCheckpoint};
    use realsyn_builder::cluster::synthetic_topics;
    let (n, d) = (a.n, a.dim);
    let topics = (n / 200).max(1);
    let k = ((n as f64 / 420.0).round() as usize).max(1);
    let nq = if a.queries > 0 { a.queries } else { 100 * k };
    let x = synthetic_topics(n, d, topics, a.noise, 1);
    // Queries: rows of the same topics drawn apart from the corpus (other seeds),
    // plus a quarter of a row of another topic: images only partly about one topic.
    let mut q: Vec<f32> = synthetic_topics(nq, d, topics, a.noise, 3)
        .chunks(d)
        .zip(synthetic_topics(nq, d, topics, a.noise, 2).chunks(d).rev())
        .flat_map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(u, v)| u + 0.25 * v)
                .collect::<Vec<_>>()
        })
        .collect();
    kmeans::normalise_rows(&mut q, d);
    let p = KMeansParams::new(k);
    let two_level = match a.levels.as_str() {
        "1" => false,
        "2" => true,
        _ => k >= realsyn_builder::cluster::fit::TWO_LEVEL_FROM,
    };
    realsyn_runtime::vector_search::with_search(&a.device, |engine| {
        let t0 = Instant::now();
        let km = if two_level {
            kmeans::train_two_level(&x, d, &p, engine, &mut NoCheckpoint)?
        } else {
            kmeans::train(&x, d, &p, engine, &mut NoCheckpoint)?
        };
        let train_s = t0.elapsed().as_secs_f64();
        // Every row to its cluster as cluster-text assigns it; for two-level, how
        // often probing 1, 2, 4 coarse clusters finds the flat assignment's cluster.
        let t1 = Instant::now();
        let assign = km.assign(&x, a.assign_probe, engine)?.ids;
        let assign_s = t1.elapsed().as_secs_f64();
        let mut agreement = Vec::new();
        if two_level {
            let t = Instant::now();
            let flat = engine.top_m(&x, &km.centroids, d, 1)?.ids;
            let flat_s = t.elapsed().as_secs_f64();
            for probe in [1usize, 2, 4, 8] {
                let t = Instant::now();
                let ids = km.assign(&x, Some(probe), engine)?.ids;
                let same = ids.iter().zip(&flat).filter(|(a, b)| a == b).count();
                agreement.push(serde_json::json!({
                    "probe": probe, "same_cluster_as_flat": same as f64 / n as f64,
                    "seconds": t.elapsed().as_secs_f64(), "flat_seconds": flat_s,
                }));
            }
        }
        let lists = MemoryLists::from_assignment(&x, d, km.centroids.clone(), &assign);
        let sample = nq.min(1000);
        let t2 = Instant::now();
        let exact = engine.top_m(&q[..sample * d], &x, d, 3)?;
        let exact_sample_s = t2.elapsed().as_secs_f64();
        let exact_s = exact_sample_s * nq as f64 / sample as f64;
        // Query j and corpus row i belong to topics j and i mod topics: how many of
        // the exact top-3 share the query's topic (the rest are noise that happens
        // to lie close, which no clustering can find).
        let on_topic = (0..sample)
            .flat_map(|j| exact.row(j).map(move |(i, _)| (j, i as usize)))
            .filter(|&(j, i)| i % topics == j % topics)
            .count() as f64
            / (3 * sample) as f64;
        let mut curve = Vec::new();
        for m in [1usize, 2, 4, 8] {
            let t = Instant::now();
            let found = search(&lists, &q, m, 3, engine)?;
            let seconds = t.elapsed().as_secs_f64();
            let hits: usize = (0..sample)
                .map(|j| {
                    let want: Vec<i64> = exact.row(j).map(|(i, _)| i as i64).collect();
                    found[j]
                        .hits
                        .iter()
                        .filter(|h| want.contains(&h.id))
                        .count()
                })
                .sum();
            curve.push(serde_json::json!({
                "probe": m, "recall_at_3": hits as f64 / (3 * sample) as f64,
                "seconds": seconds, "speedup": exact_s / seconds,
            }));
        }
        let report = serde_json::json!({
            "impl": "realsyn", "mode": "retrieval", "n": n, "dim": d, "clusters": k,
            "levels": if two_level { 2 } else { 1 }, "queries": nq, "noise": a.noise,
            "kmeans_seconds": train_s, "assign_seconds": assign_s,
            "two_level_assignment": agreement, "exact_top3_on_topic": on_topic,
            "exact_seconds_for_1000": exact_sample_s, "exact_seconds_scaled": exact_s,
            "curve": curve, "threads": rayon::current_num_threads(), "device": a.device,
        });
        if let Some(dir) = &a.dump {
            use realsyn_io::npy::write_npy;
            std::fs::create_dir_all(dir)?;
            write_npy(&dir.join("corpus.npy"), &x, &[n, d])?;
            write_npy(&dir.join("queries.npy"), &q[..sample * d], &[sample, d])?;
            std::fs::write(dir.join("realsyn.json"), serde_json::to_vec(&report)?)?;
        }
        println!("{report}");
        Ok(())
    })
}
