//! `realsyn view`: a local web page over a store's written dataset. A static site
//! (no CDN, no server logic): `index.html` (this folder's page, search in the
//! browser), `samples.js` (the samples as one JS object, so the page also opens
//! from `file://`), `images/KEY.jpg`, and the dataset report's charts. The CLI
//! writes it and serves it on loopback, or leaves it for any static server.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::write::Variant;
use crate::write::stage::variant_dir;

const INDEX: &str = include_str!("index.html");

/// One sample as the page shows it.
#[derive(Serialize)]
struct ViewSample {
    key: String,
    doc_id: Option<String>,
    texts: serde_json::Value,
    text1: Option<String>,
    text2: Option<String>,
    text3: Option<String>,
    syn_text: Option<String>,
    caption: Option<String>,
    tags: serde_json::Value,
}

#[derive(Serialize)]
struct Site {
    store: String,
    variant: String,
    total: usize,
    samples: Vec<ViewSample>,
    funnel: Vec<crate::store::funnel::Step>,
    charts: Vec<String>,
}

/// What was written.
pub struct SiteSummary {
    pub shown: usize,
    pub total: usize,
    /// Unreadable samples (a truncated or corrupt tar), by reason.
    pub skipped: std::collections::BTreeMap<String, u64>,
}

/// Write the site for `variant` of `store` into `out` (at most `limit` samples,
/// in key order).
pub fn write_site(store: &Path, variant: Variant, out: &Path, limit: usize) -> Result<SiteSummary> {
    let dir = variant_dir(store, variant);
    let tars = crate::store::tars_in(&dir).with_context(|| {
        format!("{variant} was not written: run `realsyn build write` (the store needs --dataset)")
    })?;
    if tars.is_empty() {
        bail!("{} holds no shards", dir.display());
    }
    let images = out.join("images");
    std::fs::create_dir_all(&images)?;
    let skips = realsyn_data::wds::SkipCounter::new();
    let (mut samples, mut total) = (Vec::new(), 0usize);
    for t in &tars {
        for s in realsyn_data::wds::read_shard(t, &skips) {
            total += 1;
            if samples.len() >= limit {
                continue;
            }
            let (Some(jpg), Some(json)) = (s.get("jpg"), s.get("json")) else {
                continue;
            };
            let j: serde_json::Value = serde_json::from_slice(json)
                .with_context(|| format!("{}: {}.json", t.display(), s.key))?;
            let text = |k: &str| j[k].as_str().map(str::to_string);
            std::fs::write(images.join(format!("{}.jpg", s.key)), jpg)?;
            samples.push(ViewSample {
                key: s.key.clone(),
                doc_id: text("doc_id"),
                texts: j["texts"].clone(),
                text1: text("text1"),
                text2: text("text2"),
                text3: text("text3"),
                syn_text: text("syn_text"),
                caption: text("caption"),
                tags: j["tags"].clone(),
            });
        }
    }
    let report = store.join("report");
    let mut charts = Vec::new();
    if report.exists() {
        std::fs::create_dir_all(out.join("report"))?;
        for name in ["cosines", "clusters", "lengths"] {
            let src = report.join(format!("{name}.svg"));
            if src.exists() {
                std::fs::copy(&src, out.join(format!("report/{name}.svg")))?;
                charts.push(format!("report/{name}.svg"));
            }
        }
    }
    let site = Site {
        store: store.display().to_string(),
        variant: variant.name(),
        total,
        funnel: crate::pipeline::store_funnel(store)?.steps,
        samples,
        charts,
    };
    let shown = site.samples.len();
    // `</` cannot end the script early: JSON strings escape it.
    let js = format!(
        "window.REALSYN = {};\n",
        serde_json::to_string(&site)?.replace("</", "<\\/")
    );
    realsyn_io::fs::write_atomic(&out.join("samples.js"), js.as_bytes())?;
    realsyn_io::fs::write_atomic(&out.join("index.html"), INDEX.as_bytes())?;
    Ok(SiteSummary {
        shown,
        total,
        skipped: skips.snapshot(),
    })
}
