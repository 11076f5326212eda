//! `KEY.json`: the released RealSyn fields (`text1`, `text2`, `text3`, `syn_text`)
//! under img2dataset's (`key`, `status`, `url`, `width`, `height`,
//! `original_width`, `original_height`), then where every part of the sample came
//! from: the image's document and position, each realistic text's document,
//! position, retrieval cosine and text cluster, the image cluster and balance
//! cosine, the caption, the tags, and the synthetic text's generator and seed.

use serde::{Deserialize, Serialize};

use crate::balance::stage::BalancedRow;
use crate::generate::stage::GeneratedRow;
use crate::retrieve::stage::RetrievedText;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleJson {
    pub key: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text3: Option<String>,
    /// The synthetic text (absent when its generation failed; the reason is in
    /// `syn_missing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_text: Option<String>,
    pub url: String,
    pub width: u32,
    pub height: u32,
    pub original_width: u32,
    pub original_height: u32,
    /// Provenance.
    pub image_id: String,
    pub doc_id: String,
    pub doc_url: Option<String>,
    /// The image's index among its document's items.
    pub image_position: usize,
    /// Every realistic text, best first (`text1` = `texts[0].text`).
    pub texts: Vec<RetrievedText>,
    /// The text clusters searched, nearest first: (cluster, centroid cosine).
    pub text_clusters: Vec<(u32, f32)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_cluster: Option<u32>,
    /// cosine(image, scored text) of the balance, and which text it scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_cosine: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_text: Option<String>,
    pub caption: Option<String>,
    pub caption_source: String,
    pub tags: Vec<(String, f32)>,
    /// Every synthetic text with its generator (model, seed, template hash).
    pub syn_texts: Vec<crate::generate::stage::SyntheticText>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub syn_missing: Vec<String>,
}

impl SampleJson {
    pub fn new(
        key: &str,
        g: &GeneratedRow,
        b: Option<&BalancedRow>,
        (width, height): (u32, u32),
    ) -> Self {
        let text = |i: usize| g.pair.texts.get(i).map(|t| t.text.clone());
        let img = &g.pair.image;
        Self {
            key: key.to_string(),
            status: "success".into(),
            text1: text(0),
            text2: text(1),
            text3: text(2),
            syn_text: g.synthetic.first().map(|s| s.text.clone()),
            url: img.src.clone(),
            width,
            height,
            original_width: img.width,
            original_height: img.height,
            image_id: img.id.clone(),
            doc_id: img.doc_id.clone(),
            doc_url: img.doc_url.clone(),
            image_position: img.position,
            texts: g.pair.texts.clone(),
            text_clusters: g.pair.clusters.clone(),
            image_cluster: b.and_then(|b| b.cluster),
            balance_cosine: b.and_then(|b| b.cosine),
            balance_text: b.map(|b| b.scored_text.clone()),
            caption: g.caption.text.clone(),
            caption_source: g.caption.source.clone(),
            tags: g.tags.clone(),
            syn_texts: g.synthetic.clone(),
            syn_missing: g.synthetic_missing.clone(),
        }
    }
}
