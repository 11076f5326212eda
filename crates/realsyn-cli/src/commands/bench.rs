//! `realsyn bench`: model throughput on a backend, for docs/performance.md. The peer
//! measurement (PyTorch open_clip) is `benches/model_bench.py`; `benches/model.sh`
//! runs both in one go and prints the ratios.

use std::time::Instant;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use realsyn_data::loader::{DataPosition, EpochLoader, LoaderConfig};
use realsyn_data::wds::{ShardList, SkipCounter};
use realsyn_data::{ImageTransform, RandomResizedCrop, TextKeys};
use realsyn_model::{Clip, ClipConfig};
use realsyn_train::distributed::{LaunchEnv, ProcessGroup};
use realsyn_train::optim::{AdamW, AdamWConfig, clamp_logit_scale, track_gradients};
use realsyn_train::recipe::Precision;
use realsyn_train::step::{DeviceSlice, distributed_step};

use realsyn_runtime::{BackendJob, dispatch};

/// Time CLIP on random inputs: `encode-image` (inference, no autodiff) or
/// `train-step` (the trainer's step: both towers, InfoNCE, backward, AdamW; started
/// as several processes by torchrun/Slurm variables, the distributed step with
/// --batch-size per rank, which times the all-gather and all-reduce too), or the
/// training data pipeline: `data` (shards -> decode -> RandomResizedCrop(224) ->
/// normalised batches, on --workers threads), or `linear-probe` (one logistic
/// regression fit on --features/--labels), or `features` (the evaluator's feature
/// extraction end to end: read a wds export's test split, decode, resize + centre
/// crop, encode, normalise; --max-images images), or `sentences` (the builder's
/// Punkt + rules + word counts + entropy on --text, one thread), or `image-filter`
/// (read + header size + the size/aspect rule over --images, one thread), or
/// `semantic-dedup` (LSH + union-find on --n synthetic --dim embeddings, 10% planted
/// near-duplicates at cosine 0.97, threshold 0.95; recall against brute force on
/// 1,000 sampled rows), or `perplexity` (GPT-2 --gpt2 scoring every line of --text,
/// length-sorted batches of --batch-tokens padded tokens), or `kmeans` (spherical
/// k-means on --features with --k clusters, --iters iterations), or `retrieval`
/// (hierarchical against exact search on --n synthetic --dim embeddings, 420 per
/// cluster, --queries queries), or `llm` (the embedded LLM generating --new-tokens
/// per prompt for --n prompts of a prompts.json, --batch-size at a time), or
/// `caption` (GIT from a snapshot --weights captioning the first --n images of --images,
/// --new-tokens each, --beams, --batch-size images at a time). Prints one JSON line
/// per run.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// encode-image | encode-text | train-step | data | linear-probe | features
    #[arg(long, default_value = "encode-image")]
    mode: String,
    #[arg(long, default_value = "ViT-B-32")]
    arch: String,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// cpu (flex), ndarray (build with --features ndarray), cuda[:N] (--features cuda)
    #[arg(long, default_value = "cpu")]
    device: String,
    /// `data` mode: shard pattern. `features` mode: a wds export root (ROOT/test/*.tar).
    #[arg(long)]
    shards: Option<String>,
    /// `data` mode: decode threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// `linear-probe` mode: features `[n, d]` (.npy, f32) and labels `[n]` (.npy, i32).
    #[arg(long)]
    features: Option<std::path::PathBuf>,
    #[arg(long)]
    labels: Option<std::path::PathBuf>,
    /// `linear-probe` mode: inverse L2 strength (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// `sentences` mode: a UTF-8 text file (paragraphs separated by blank lines),
    /// processed --iters times over.
    #[arg(long)]
    text: Option<std::path::PathBuf>,
    /// `semantic-dedup` mode: synthetic embeddings, count and dimension.
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    #[arg(long, default_value_t = 256)]
    dim: usize,
    /// `kmeans` mode: clusters (with --features, --iters Lloyd iterations).
    #[arg(long, default_value_t = 1000)]
    k: usize,
    /// `retrieval` mode: held-out queries (with --n sentences of --dim); 0: 100 per
    /// text cluster, the paper's ratio of images to clusters.
    #[arg(long, default_value_t = 0)]
    queries: usize,
    /// `retrieval` mode: per-coordinate noise around the topic centres (1.5: a row's
    /// cosine to its topic centre is about 0.55, to another row of its topic 0.3).
    #[arg(long, default_value_t = 1.5)]
    noise: f32,
    /// `image-filter` mode: a folder of images (searched recursively).
    #[arg(long)]
    images: Option<std::path::PathBuf>,
    /// `features` mode: images to encode.
    #[arg(long, default_value_t = 256)]
    max_images: usize,
    /// `perplexity` mode: a Hugging Face GPT-2 snapshot; --text holds one sentence per line.
    #[arg(long)]
    gpt2: Option<std::path::PathBuf>,
    /// `perplexity` mode: padded tokens per forward pass.
    #[arg(long, default_value_t = 8192)]
    batch_tokens: usize,
    /// `perplexity` mode: write each line's perplexity here (one per line, `null` when
    /// the line has no tokens), to compare with the peer's.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// `llm` mode: a GGUF file; --text is a prompts.json of tests/fixtures/llama
    /// (its first --n prompts' ids), generated --batch-size at a time.
    #[arg(long)]
    weights: Option<std::path::PathBuf>,
    /// `llm` mode: tokens generated per prompt (end-of-sequence ignored, as the peer's
    /// min_new_tokens).
    #[arg(long, default_value_t = 40)]
    new_tokens: usize,
    /// `train-step` mode: f32, or amp_bf16 (bf16 forward/backward, f32 master
    /// weights, as open_clip's --precision amp_bf16 and model_bench.py --amp).
    #[arg(long, default_value = "f32", value_parser = ["f32", "amp_bf16"])]
    precision: String,
    /// `caption` mode: beams of GIT's beam search (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beams: usize,
}

pub fn run(args: Args) -> Result<()> {
    if args.mode == "data" {
        return bench_data(&args);
    }
    if args.mode == "linear-probe" {
        return bench_linear_probe(&args);
    }
    if args.mode == "sentences" {
        return bench_sentences(&args);
    }
    if args.mode == "image-filter" {
        return bench_image_filter(&args);
    }
    if args.mode == "semantic-dedup" {
        return bench_semantic_dedup(&args);
    }
    if args.mode == "kmeans" {
        return bench_kmeans(&args);
    }
    if args.mode == "retrieval" {
        return bench_retrieval(&args);
    }
    if args.mode == "llm" {
        let (Some(gguf), Some(prompts)) = (&args.weights, &args.text) else {
            anyhow::bail!("--mode llm needs --weights FILE.gguf and --text PROMPTS.json");
        };
        let report = realsyn_runtime::llm::bench_generation(
            &args.device,
            gguf,
            prompts,
            args.n,
            args.new_tokens,
            args.batch_size,
        )?;
        println!("{report}");
        return Ok(());
    }
    if args.mode == "caption" {
        let (Some(snapshot), Some(images)) = (&args.weights, &args.images) else {
            anyhow::bail!("--mode caption needs --weights GIT_SNAPSHOT_DIR and --images DIR");
        };
        let report = realsyn_runtime::llm::bench_captions(
            &args.device,
            snapshot,
            images,
            args.n,
            args.new_tokens,
            args.beams,
            args.batch_size,
        )?;
        println!("{report}");
        return Ok(());
    }
    if args.mode == "perplexity" {
        let report = dispatch(&args.device.clone(), PerplexityBench(args.clone()))?;
        println!("{report}");
        return Ok(());
    }
    let launch = LaunchEnv::from_env()?;
    let (rank, world) = (launch.rank, launch.world);
    let seconds = dispatch(
        &launch.device_for_rank(&args.device),
        BenchJob(args.clone()),
    )?;
    if rank != 0 {
        return Ok(());
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn-burn",
            "backend": if args.precision == "amp_bf16" { format!("{}-bf16", args.device) } else { args.device.clone() },
            "mode": args.mode, "arch": args.arch,
            "batch_size": args.batch_size, "seconds": seconds, "median_s": median,
            "items_per_s": if args.mode == "features" { args.max_images } else { args.batch_size } as f64 / median,
            "threads": rayon::current_num_threads(),
            "world": world,
            "images": (args.mode == "features").then_some(args.max_images),
        })
    );
    Ok(())
}

struct BenchJob(Args);

impl BackendJob for BenchJob {
    type Output = Vec<f64>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Vec<f64>> {
        let a = self.0;
        let cfg = ClipConfig::from_name_or_path(&a.arch)?;
        let s = cfg.vision_cfg.image_size;
        let mut times = Vec::new();
        match a.mode.as_str() {
            "encode-image" | "encode-text" => {
                let model = Clip::<B>::new(&cfg, &device);
                for i in 0..a.warmup + a.iters {
                    let start = Instant::now();
                    let out = if a.mode == "encode-image" {
                        let images = Tensor::<B, 4>::random(
                            [a.batch_size, 3, s, s],
                            Distribution::Normal(0.0, 1.0),
                            &device,
                        );
                        model.encode_image(images)
                    } else {
                        model.encode_text(random_tokens::<B>(&cfg, a.batch_size, &device))
                    };
                    let _ = out.into_data(); // forces execution on lazy backends
                    if i >= a.warmup {
                        times.push(start.elapsed().as_secs_f64());
                    }
                }
            }
            "features" => {
                let root = a
                    .shards
                    .as_deref()
                    .ok_or_else(|| anyhow::anyhow!("--mode features needs --shards ROOT"))?;
                let data = realsyn_eval::LabelledDataset::open(std::path::Path::new(root), "test")?;
                let model = Clip::<B>::new(&cfg, &device);
                for i in 0..a.warmup + a.iters {
                    let start = Instant::now();
                    let limit = if i < a.warmup {
                        a.batch_size
                    } else {
                        a.max_images
                    };
                    let f = realsyn_eval::image_features(
                        &model,
                        &data,
                        limit,
                        a.batch_size,
                        &device,
                        &mut |_| {},
                    )?;
                    anyhow::ensure!(f.len() == limit, "only {} images in {root}/test", f.len());
                    if i >= a.warmup {
                        times.push(start.elapsed().as_secs_f64());
                    }
                }
            }
            "train-step" => {
                // The trainer's own step: forward, InfoNCE, backward, AdamW, clamp.
                let precision = match a.precision.as_str() {
                    "amp_bf16" => Precision::AmpBf16,
                    _ => Precision::F32,
                };
                let mut group = ProcessGroup::join(LaunchEnv::from_env()?, "realsyn bench")?;
                let model = group.broadcast_parameters(Clip::<Autodiff<B>>::new(&cfg, &device))?;
                let mut model = track_gradients(model)?;
                let mut optim = AdamW::new(AdamWConfig {
                    weight_decay: 0.2,
                    beta1: 0.9,
                    beta2: 0.98,
                    eps: 1e-6,
                });
                for i in 0..a.warmup + a.iters {
                    let start = Instant::now();
                    let images = Tensor::random(
                        [a.batch_size, 3, s, s],
                        Distribution::Normal(0.0, 1.0),
                        &device,
                    );
                    let tokens = random_tokens::<Autodiff<B>>(&cfg, a.batch_size, &device);
                    let slice = DeviceSlice {
                        model: model.clone(),
                        images,
                        tokens,
                    };
                    let out = distributed_step(vec![slice], 1, precision, &mut group)?;
                    optim.update(&mut model, &out.grads, 1e-3, 0.9)?;
                    model = clamp_logit_scale(model);
                    let _ = model.logit_scale.val().into_data();
                    if i >= a.warmup {
                        times.push(start.elapsed().as_secs_f64());
                    }
                }
            }
            other => {
                anyhow::bail!("unknown --mode {other:?}: encode-image, encode-text or train-step")
            }
        }
        Ok(times)
    }
}

/// Rows shaped like real captions: SOT, ~20 ids, EOT, padding.
fn random_tokens<B: Backend>(cfg: &ClipConfig, n: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let ctx = cfg.text_cfg.context_length;
    let len = 20.min(ctx - 2);
    let mut rows = vec![0i32; n * ctx];
    for r in 0..n {
        rows[r * ctx] = 49406;
        for j in 1..=len {
            rows[r * ctx + j] = ((r * 7919 + j * 104729) % 49000) as i32 + 1;
        }
        rows[r * ctx + len + 1] = 49407;
    }
    Tensor::from_data(TensorData::new(rows, [n, ctx]), device)
}

/// Images/s of the training pipeline over every sample of the shards, one epoch.
fn bench_data(a: &Args) -> Result<()> {
    let spec = a
        .shards
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--mode data needs --shards"))?;
    let list = ShardList::resolve(spec)?;
    let n = list
        .num_samples()
        .ok_or_else(|| anyhow::anyhow!("no sizes.json beside {spec}"))?;
    let cfg = LoaderConfig {
        shards: list.shards.clone(),
        rank: 0,
        world: 1,
        batch_size: a.batch_size,
        batches_per_epoch: n / a.batch_size as u64,
        seed: 0,
        shuffle_buffer: 1000,
        resampled: false,
        workers: a.workers,
        prefetch: 2,
        text_keys: TextKeys::default(),
        transform: ImageTransform::Train(RandomResizedCrop::new(224)),
        tokenize: None,
    };
    let mut seconds = Vec::new();
    let mut images = 0;
    for _ in 0..a.iters {
        let start = Instant::now();
        images = 0;
        for b in EpochLoader::start(cfg.clone(), DataPosition::default(), SkipCounter::new())? {
            images += b?.len();
        }
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "data", "workers": a.workers, "images": images,
            "median_s": median, "images_per_s": images as f64 / median,
        })
    );
    Ok(())
}

/// Fit time of one logistic regression (scikit-learn's objective, lbfgs).
fn bench_linear_probe(a: &Args) -> Result<()> {
    use realsyn_eval::linear_probe::{Split, fit};
    use realsyn_io::npy::read_npy;
    let need = || anyhow::anyhow!("--mode linear-probe needs --features X.npy --labels y.npy");
    let (x, shape) = read_npy::<f32>(a.features.as_deref().ok_or_else(need)?)?;
    let (y, _) = read_npy::<i32>(a.labels.as_deref().ok_or_else(need)?)?;
    let y: Vec<usize> = y.iter().map(|&v| v as usize).collect();
    let classes = y.iter().max().map_or(0, |m| m + 1);
    let split = Split {
        x: &x,
        y: &y,
        dim: shape[1],
    };
    let start = Instant::now();
    let model = fit(&split, classes, a.c, 1000, 1e-4);
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "linear-probe", "n": y.len(), "dim": shape[1], "classes": classes,
            "C": a.c, "seconds": seconds, "iterations": model.iterations,
            "train_accuracy": model.accuracy(&split),
        })
    );
    Ok(())
}

/// Sentences/s of the builder's text path on one thread: Punkt, the emoji/URL/length
/// rules, the word-count pass and the entropy filter (as `benches/sentences.py`).
fn bench_sentences(a: &Args) -> Result<()> {
    use realsyn_builder::SentenceSplitter;
    use realsyn_builder::text_filters::{MIN_ENTROPY, WordCounts, rule_violation, words};
    let path = a
        .text
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--mode sentences needs --text FILE"))?;
    let text = std::fs::read_to_string(path)?;
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
fn bench_image_filter(a: &Args) -> Result<()> {
    use realsyn_builder::images::{header, size_violation};
    let root = a
        .images
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--mode image-filter needs --images DIR"))?;
    let files = realsyn_builder::ingest::find_files(root, realsyn_data::image::IMAGE_EXTENSIONS)?;
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

fn bench_semantic_dedup(a: &Args) -> Result<()> {
    use realsyn_builder::dedup::{
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
fn bench_kmeans(a: &Args) -> Result<()> {
    use realsyn_builder::cluster::kmeans::{self, KMeansParams, NoCheckpoint};
    let path = a
        .features
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--mode kmeans needs --features X.npy"))?;
    let emb = realsyn_io::Embeddings::read_npy(path)?;
    let (n, d) = (emb.rows(), emb.width());
    let p = KMeansParams {
        k: a.k,
        iterations: a.iters,
        ..KMeansParams::new(a.k)
    };
    let train_rows = kmeans::training_sample(n, &p).len();
    let start = Instant::now();
    let km = kmeans::train(emb.as_slice(), d, &p, &mut NoCheckpoint)?;
    let seconds = start.elapsed().as_secs_f64();
    let objective = kmeans::objective(emb.as_slice(), &km.centroids, d);
    let per_iter = seconds / a.iters as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "kmeans", "n": n, "d": d, "k": a.k, "iterations": a.iters,
            "training_rows": train_rows, "seconds": seconds, "seconds_per_iteration": per_iter,
            "gflops": 2.0 * train_rows as f64 * a.k as f64 * d as f64 / per_iter / 1e9,
            "objective": objective, "threads": rayon::current_num_threads(),
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
fn bench_retrieval(a: &Args) -> Result<()> {
    use realsyn_builder::cluster::ivf::{MemoryLists, search};
    use realsyn_builder::cluster::kmeans::{self, KMeansParams, NoCheckpoint};
    use realsyn_builder::cluster::{synthetic_topics, top_m};
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
    let two_level = k >= realsyn_builder::stages::cluster_text::TWO_LEVEL_FROM;
    let t0 = Instant::now();
    let km = if two_level {
        kmeans::train_two_level(&x, d, &p, &mut NoCheckpoint)?
    } else {
        kmeans::train(&x, d, &p, &mut NoCheckpoint)?
    };
    let train_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let lists = MemoryLists::build(&x, d, km.centroids.clone());
    let assign_s = t1.elapsed().as_secs_f64();
    let sample = nq.min(1000);
    let t2 = Instant::now();
    let exact = top_m(&q[..sample * d], &x, d, 3);
    let exact_sample_s = t2.elapsed().as_secs_f64();
    let exact_s = exact_sample_s * nq as f64 / sample as f64;
    let mut curve = Vec::new();
    for m in [1usize, 2, 4, 8] {
        let t = Instant::now();
        let found = search(&lists, &q, m, 3);
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
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "retrieval", "n": n, "dim": d, "clusters": k,
            "levels": if two_level { 2 } else { 1 }, "queries": nq, "noise": a.noise,
            "kmeans_seconds": train_s, "assign_seconds": assign_s,
            "exact_seconds_for_1000": exact_sample_s, "exact_seconds_scaled": exact_s,
            "curve": curve, "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

/// GPT-2 perplexity throughput: load once, then score the whole file `--iters` times
/// (the median run is reported).
struct PerplexityBench(Args);

impl BackendJob for PerplexityBench {
    type Output = serde_json::Value;

    fn run<B: Backend>(self, device: B::Device) -> Result<serde_json::Value> {
        let a = self.0;
        let (Some(weights), Some(text)) = (a.gpt2.as_deref(), a.text.as_deref()) else {
            anyhow::bail!(
                "--mode perplexity needs --gpt2 SNAPSHOT and --text FILE (one sentence per line)"
            );
        };
        let lines: Vec<String> = std::fs::read_to_string(text)?
            .lines()
            .map(str::to_string)
            .collect();
        let mut scorer = realsyn_model::Gpt2Perplexity::<B>::load(weights, None, &device)?;
        scorer.batch_tokens = a.batch_tokens.max(1);
        let tokens: usize = lines.iter().map(|l| scorer.ids(l).len()).sum();
        let mut seconds = Vec::new();
        let mut ppl = Vec::new();
        for _ in 0..a.iters.max(1) {
            let start = Instant::now();
            ppl = scorer.perplexities(&lines)?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        if let Some(out) = &a.output {
            let text: String = ppl
                .iter()
                .map(|p| p.map_or("null".to_string(), |p| format!("{p}")) + "\n")
                .collect();
            realsyn_io::fs::write_atomic(out, text.as_bytes())?;
        }
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        Ok(serde_json::json!({
            "impl": "realsyn-burn", "backend": a.device, "mode": "perplexity",
            "layers": scorer.config.n_layer, "width": scorer.config.n_embd,
            "sentences": lines.len(), "tokens": tokens, "median_s": median,
            "sentences_per_s": lines.len() as f64 / median, "tokens_per_s": tokens as f64 / median,
            "threads": rayon::current_num_threads(),
        }))
    }
}
