//! The open-set tagger with a CLIP of the model library against open_clip (fixture:
//! tests/peer/tagger_fixture.py, RAM's first 400 tags, 4 templates, real photos):
//! tag embeddings equal open_clip's, scores of open_clip's image embeddings equal
//! its scores to 1e-4, and our own image embeddings rank the same tags first.

use std::path::Path;

use realsyn_builder::embed::ImageEmbedder;
use realsyn_builder::generate::tags::{TAG_TEMPLATES, TagIndex};
use realsyn_model::backend::Cpu;
use realsyn_runtime::build_models::TowerEmbedder;

#[test]
fn tags_and_scores_equal_open_clips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tagger");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let templates: Vec<&str> = expected["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(templates, TAG_TEMPLATES);
    let tags: Vec<String> = expected["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let device = Default::default();
    let mut clip = TowerEmbedder::<Cpu>::load(
        dir.join("clip.safetensors").to_str().unwrap(),
        Some(dir.join("tagger-tiny.json").to_str().unwrap()),
        &device,
    )
    .unwrap();
    clip.prepare_text().unwrap();
    let index = TagIndex::build(tags, &mut clip).unwrap();
    let (peer_tags, _) = realsyn_io::npy::read_npy::<f32>(&dir.join("tag_embeddings.npy")).unwrap();
    let tag_diff = index
        .embeddings
        .as_slice()
        .iter()
        .zip(&peer_tags)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("max |tag embedding - open_clip| = {tag_diff:.2e}");
    assert!(tag_diff < 1e-5, "{tag_diff}");
    let (peer_images, shape) =
        realsyn_io::npy::read_npy::<f32>(&dir.join("image_embeddings.npy")).unwrap();
    let width = shape[1];
    let (mut worst, mut image_diff) = (0f32, 0f32);
    let photos = expected["photos"].as_array().unwrap();
    for (k, name) in photos.iter().enumerate() {
        let name = name.as_str().unwrap();
        let want: Vec<(String, f32)> = expected["top"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_f64().unwrap() as f32,
                )
            })
            .collect();
        let names = |v: &[(String, f32)]| v.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
        // The tagger on open_clip's image embedding: open_clip's tags and scores.
        let peer_row = &peer_images[k * width..(k + 1) * width];
        let from_peer = index.top(peer_row, 8, -1.0);
        assert_eq!(names(&from_peer), names(&want), "{name}");
        for (a, b) in from_peer.iter().zip(&want) {
            worst = worst.max((a.1 - b.1).abs());
        }
        // Our image tower end to end (image crate resampling vs PIL's): same ranking.
        let img = image::open(dir.join("photos").join(format!("{name}.png"))).unwrap();
        let e = ImageEmbedder::embed(&mut clip, &[img]).unwrap();
        for (a, b) in e.row(0).iter().zip(peer_row) {
            image_diff = image_diff.max((a - b).abs());
        }
        let ours = index.top(e.row(0), 3, -1.0);
        assert_eq!(names(&ours), names(&want[..3]), "{name}");
    }
    eprintln!(
        "max |score - open_clip| = {worst:.2e}; max |image embedding - open_clip| = {image_diff:.2e}"
    );
    assert!(worst < 1e-4, "{worst}");
}
