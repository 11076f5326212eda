//! `realsyn view`: browse a store's dataset in a web browser.

use std::path::PathBuf;

use anyhow::Result;

/// A local web page over a store's written dataset: each sample's image, its 3
/// realistic texts with their cosines and a link to their source document, the
/// synthetic text, caption and tags, a search box (texts, captions, tags; also
/// ?q=WORDS in the URL), the funnel and the dataset report's charts. Written as a
/// static site (STORE/view/VARIANT, or --out) and served on loopback; no CDN.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  realsyn view --store runs/gimp-tiny/store --variant balanced-16\n  \
then open http://127.0.0.1:8765/?q=brush"
)]
pub struct Args {
    #[arg(long)]
    store: PathBuf,
    /// The variant to show (all, balanced-CAP, random-CAP); default: the first written.
    #[arg(long)]
    variant: Option<realsyn_builder::write::Variant>,
    /// Samples on the page at most (in key order).
    #[arg(long, default_value_t = 2000)]
    limit: usize,
    /// Write the site here instead of STORE/view/VARIANT.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8765")]
    addr: String,
    /// Write the site and exit (open OUT/index.html, or serve it with any static server).
    #[arg(long)]
    no_serve: bool,
}

pub fn run(args: Args) -> Result<()> {
    let m = realsyn_builder::store::manifest::Manifest::read(&args.store)?;
    let variant = match args.variant {
        Some(v) => v,
        None => *m
            .dataset
            .as_ref()
            .and_then(|d| d.variants.first())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} writes no dataset (build it with --dataset)",
                    args.store.display()
                )
            })?,
    };
    let out = args
        .out
        .unwrap_or_else(|| args.store.join("view").join(variant.name()));
    let s = realsyn_builder::view::write_site(&args.store, variant, &out, args.limit)?;
    eprintln!(
        "view: {} of {} samples of {variant} in {}",
        s.shown,
        s.total,
        out.join("index.html").display()
    );
    if !s.skipped.is_empty() {
        eprintln!("view: skipped unreadable samples: {:?}", s.skipped);
    }
    if args.no_serve {
        return Ok(());
    }
    realsyn_runtime::static_server::serve(&out, &args.addr, |bound| {
        eprintln!("view: serving http://{bound}/ (Ctrl-C to stop)");
    })
}
