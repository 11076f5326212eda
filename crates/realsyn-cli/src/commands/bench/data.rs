//! The training data pipeline over real shards; the peer is webdataset + PIL in
//! `benches/data_pipeline.sh`.

use std::time::Instant;

use anyhow::Result;
use realsyn_data::loader::{DataPosition, EpochLoader, LoaderConfig};
use realsyn_data::wds::{ShardList, SkipCounter};
use realsyn_data::{ImageTransform, RandomResizedCrop, TextKeys};

#[derive(clap::Args)]
pub struct Data {
    /// Shard pattern with a sizes.json beside it, e.g. 'DIR/{00000..00007}.tar'.
    #[arg(long)]
    shards: String,
    /// Decode threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Epochs timed (the median is reported).
    #[arg(long, default_value_t = 3)]
    iters: usize,
}

/// Images/s of the training pipeline over every sample of the shards, one epoch.
pub fn run(a: &Data) -> Result<()> {
    let spec = &a.shards;
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
    for _ in 0..a.iters.max(1) {
        let start = Instant::now();
        images = 0;
        for b in EpochLoader::start(cfg.clone(), DataPosition::default(), SkipCounter::new())? {
            images += b?.len();
        }
        seconds.push(start.elapsed().as_secs_f64());
    }
    let median = super::median(seconds);
    println!(
        "{}",
        serde_json::json!({
            "impl": "realsyn", "mode": "data", "workers": a.workers, "images": images,
            "median_s": median, "images_per_s": images as f64 / median,
        })
    );
    Ok(())
}
