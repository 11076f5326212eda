//! `realsyn build` end to end: the GIMP manual (Debian gimp-help-en, 685 real pages),
//! a SIGKILL mid-build then a re-run giving byte-identical output, and bad inputs
//! (corrupt and truncated JPEGs, garbage bytes, bad UTF-8, malformed JSONL) counted
//! in the funnel, never fatal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use realsyn_builder::Funnel;

mod common;

// `realsyn` here always expects success.
use common::{glob, ok as realsyn, tree};

const GIMP: &str = "/usr/share/gimp/2.0/help/en";

/// A path as a command-line argument.
fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn funnel(store: &Path) -> Funnel {
    serde_json::from_slice(&std::fs::read(store.join("funnel.json")).unwrap()).unwrap()
}

/// (in, out, drops) of a step.
/// (step, what, reason) of every `skips.jsonl` row of a store's extract parts.
fn skip_log(store: &Path) -> Vec<(String, String, String)> {
    glob(store, "skips.jsonl")
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let s = |k: &str| v[k].as_str().unwrap().to_string();
                    (s("step"), s("what"), s("reason"))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn step(f: &Funnel, name: &str) -> (u64, u64, BTreeMap<String, u64>) {
    let s = f
        .steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}: {f:?}"));
    (s.input, s.output, s.dropped.clone())
}

#[test]
fn builds_the_gimp_manual_and_resumes_identically_after_sigkill() {
    assert!(
        Path::new(GIMP).exists(),
        "run scripts/setup-system.sh (installs gimp-help-en)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (clean, killed) = (tmp.path().join("clean"), tmp.path().join("killed"));
    let args = |store: &Path| -> Vec<String> {
        [
            "build",
            "all",
            "--input",
            GIMP,
            "--parts",
            "4",
            // Several tars per part, so rows must name the right one.
            "--images-per-tar",
            "200",
            "--store",
            store.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let a: Vec<String> = args(&clean);
    realsyn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let f = funnel(&clean);
    let (docs_in, docs_out, _) = step(&f, "ingest");
    assert_eq!((docs_in, docs_out), (685, 685));
    let (imgs_in, imgs_kept, drops) = step(&f, "size and aspect");
    assert!(imgs_in > 1969 && imgs_kept > 1000, "{imgs_in} {imgs_kept}");
    assert!(
        drops["shorter side < 100 px"] > 1000,
        "navigation icons are small: {drops:?}"
    );
    let (_, unique, dups) = step(&f, "image dedup");
    assert!(
        unique > 1000 && dups["identical bytes"] > 0,
        "{unique} {dups:?}"
    );
    let (cat_in, cat_out, _) = step(&f, "complexity + action (CAT)");
    assert!(
        cat_out > cat_in / 4 && cat_out < cat_in,
        "CAT keeps {cat_out} of {cat_in}"
    );
    let (_, sentences, _) = step(&f, "near-exact dedup");
    assert!(sentences > 5000, "{sentences}");
    // Every kept image row names the tar that holds its bytes.
    let mut members = std::collections::HashSet::new();
    let tars = glob(&clean.join("extract"), ".tar");
    assert!(tars.len() > 4, "{} tars", tars.len());
    for tar in tars {
        let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
        for e in archive.entries().unwrap() {
            let name = e.unwrap().path().unwrap().to_string_lossy().to_string();
            members.insert(format!("{}/{name}", tar.display()));
        }
    }
    let kept = std::fs::read_to_string(clean.join("dedup-images/part-00000-of-00001/images.jsonl"))
        .unwrap();
    for line in kept.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let member = format!(
            "{}/{}/{}.{}",
            clean.join(row["shard"].as_str().unwrap()).display(),
            row["tar"].as_str().unwrap(),
            row["id"].as_str().unwrap(),
            row["ext"].as_str().unwrap()
        );
        assert!(members.contains(&member), "{member} not in the store");
        assert!(
            row["doc_url"]
                .as_str()
                .unwrap()
                .starts_with("file:///usr/share/gimp")
        );
    }

    // Kill a run once its second extract part is being written, then resume it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(&args(&killed))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !killed.join("extract/.tmp-part-00001-of-00004").exists()
        && !killed.join("extract/part-00001-of-00004").exists()
    {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the build never reached part 1"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !killed.join("funnel.json").exists(),
        "killed before the end"
    );
    let resumed = realsyn(&args(&killed).iter().map(String::as_str).collect::<Vec<_>>());
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        log.contains("extract 0/4: already complete, skipped"),
        "{log}"
    );
    let (x, y) = (tree(&clean), tree(&killed));
    assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
    for (path, bytes) in &x {
        assert!(bytes == &y[path], "{} differs after resume", path.display());
    }
}

fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 7 + seed) % 256) as u8,
            ((y * 3 + x * y / 50) % 256) as u8,
            ((x ^ y) + seed) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::new(w, h))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[test]
fn bad_inputs_are_counted_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let pages = tmp.path().join("pages");
    std::fs::create_dir_all(&pages).unwrap();
    let photo = jpeg(240, 180, 1);
    std::fs::write(pages.join("photo.jpg"), &photo).unwrap();
    std::fs::write(pages.join("copy.jpg"), &photo).unwrap();
    std::fs::write(pages.join("other.jpg"), jpeg(200, 200, 90)).unwrap();
    // A JPEG cut after its header: the size is readable, the pixels are not.
    let sos = photo.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    std::fs::write(pages.join("truncated.jpg"), &photo[..sos + 20]).unwrap();
    std::fs::write(
        pages.join("garbage.jpg"),
        b"\x00\x01not an image at all, just bytes",
    )
    .unwrap();
    std::fs::write(pages.join("tiny.png"), png(50, 50)).unwrap();
    std::fs::write(pages.join("wide.png"), png(400, 100)).unwrap();
    std::fs::write(
        pages.join("good.html"),
        r#"<html><body><h1>Photos</h1>
        <p>The photographer walks along the river and takes a picture of the old bridge.</p>
        <img src="photo.jpg" alt="a bridge"><img src="copy.jpg"><img src="other.jpg">
        <img src="truncated.jpg"><img src="garbage.jpg"><img src="missing.png">
        <img src="tiny.png"><img src="wide.png"><img src="https://example.invalid/a.jpg">
        <p>A child plays with a red ball 🎈 in the garden. Read more at https://example.org/page now.
        Too short. The photographer walks along the river and takes a picture of the old bridge!</p>
        </body></html>"#,
    )
    .unwrap();
    let mut bad = b"<html><body><p>Broken \xff\xfe bytes here.</p></body></html>".to_vec();
    bad.extend_from_slice(b"\xc3");
    std::fs::write(pages.join("bad-utf8.html"), bad).unwrap();
    // A Latin-1 page that says so: decoded by its charset, not dropped.
    std::fs::write(
        pages.join("latin1.html"),
        b"<html><head><meta charset=\"iso-8859-1\"></head><body><p>The caf\xe9 on the corner serves the best cr\xe8me br\xfbl\xe9e in the whole old town of Lyon.</p></body></html>",
    )
    .unwrap();
    let store = tmp.path().join("store");
    realsyn(&[
        "build",
        "all",
        "--input",
        pages.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--no-fetch",
        "--min-entropy",
        "0",
    ]);
    let f = funnel(&store);
    let (din, dout, ddrop) = step(&f, "ingest");
    // Nothing is dropped for its encoding: both pages are kept and their repair counted.
    assert_eq!((din, dout), (3, 3), "{ddrop:?}");
    let repaired = &f
        .steps
        .iter()
        .find(|s| s.name == "ingest")
        .unwrap()
        .repaired;
    assert_eq!(repaired["invalid utf-8 replaced"], 1);
    assert_eq!(repaired["decoded as windows-1252 (declared charset)"], 1);
    let sentences = std::fs::read_to_string(glob(&store, "sentences.jsonl")[0].clone()).unwrap();
    assert!(
        sentences.contains("caf\u{e9} on the corner serves the best cr\u{e8}me br\u{fb}l\u{e9}e"),
        "{sentences}"
    );
    let (iin, iout, idrop) = step(&f, "read image");
    assert_eq!((iin, iout), (9, 6), "{idrop:?}");
    assert_eq!(idrop["missing file"], 1);
    assert_eq!(idrop["url (fetch disabled)"], 1);
    assert_eq!(
        idrop.values().sum::<u64>(),
        3,
        "garbage bytes are unreadable: {idrop:?}"
    );
    let (_, sout, sdrop) = step(&f, "size and aspect");
    assert_eq!(
        (
            sout,
            sdrop["shorter side < 100 px"],
            sdrop["aspect ratio outside [1/3, 3]"]
        ),
        (4, 1, 1)
    );
    let (_, decoded, ddrop) = step(&f, "decode");
    assert_eq!((decoded, ddrop["truncated jpeg"]), (3, 1), "{ddrop:?}");
    let (_, unique, dup) = step(&f, "image dedup");
    assert_eq!((unique, dup["identical bytes"]), (2, 1));
    let (_, _, rules) = step(&f, "emoji, url, length");
    // The third short one is the repaired page's stray byte after </html> ("\u{fffd}").
    assert_eq!(
        (rules["emoji"], rules["url"], rules["fewer than 3 words"]),
        (1, 1, 3),
        "{rules:?}"
    );
    let (_, kept, dups) = step(&f, "near-exact dedup");
    // Every document or image that was not read is listed, with its reason.
    let skips = skip_log(&store);
    let dropped: u64 = ["read image", "size and aspect", "decode"]
        .iter()
        .map(|s| step(&f, s).2.values().sum::<u64>())
        .sum();
    assert_eq!(skips.len() as u64, dropped, "{skips:?}");
    let reason_of = |what: &str| {
        skips
            .iter()
            .find(|(_, w, _)| w.ends_with(what))
            .map(|(_, _, r)| r.as_str())
    };
    assert_eq!(reason_of("missing.png"), Some("missing file"));
    assert_eq!(reason_of("truncated.jpg"), Some("truncated jpeg"));
    assert_eq!(reason_of("tiny.png"), Some("shorter side < 100 px"));
    assert_eq!(
        reason_of("example.invalid/a.jpg"),
        Some("url (fetch disabled)")
    );
    // Kept: the good page's sentence, the repaired page's and the Latin-1 page's.
    assert_eq!(
        (kept, dups["duplicate text"]),
        (3, 1),
        "the repeated sentence is dropped once"
    );

    // MMC4 JSONL: a good document, a malformed line and a line of bad UTF-8.
    let jsonl = tmp.path().join("docs.jsonl");
    let mut lines = serde_json::json!({
        "url": "https://example.org/a", "text_list": ["A woman rides a bicycle through the busy market square."],
        "image_info": [{"image_name": "photo.jpg", "raw_url": "https://example.org/p.jpg", "matched_text_index": 0}]
    })
    .to_string()
    .into_bytes();
    lines.extend_from_slice(b"\n{\"url\": \"x\", \"text_list\": [\n\xff\xfe{}\n");
    std::fs::write(&jsonl, lines).unwrap();
    std::fs::copy(pages.join("photo.jpg"), tmp.path().join("photo.jpg")).unwrap();
    let store2 = tmp.path().join("store2");
    realsyn(&[
        "build",
        "all",
        "--format",
        "mmc4",
        "--input",
        jsonl.to_str().unwrap(),
        "--store",
        store2.to_str().unwrap(),
    ]);
    let f = funnel(&store2);
    let (din, dout, ddrop) = step(&f, "ingest");
    assert_eq!(
        (din, dout, ddrop["malformed json"], ddrop["bad utf-8"]),
        (3, 1, 1, 1)
    );
    let reasons: Vec<(String, String)> = skip_log(&store2)
        .into_iter()
        .filter(|(step, _, _)| step == "ingest")
        .map(|(_, what, reason)| (what, reason))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|(what, _)| what.contains("docs.jsonl")));
    assert!(reasons.iter().any(|(_, r)| r == "malformed json"));
    assert!(reasons.iter().any(|(_, r)| r == "bad utf-8"));
    assert_eq!(
        step(&f, "decode").1,
        1,
        "the image named beside the JSONL is used"
    );
}

#[test]
fn semantic_dedup_links_what_the_perceptual_hash_misses() {
    let tmp = tempfile::tempdir().unwrap();
    let pages = tmp.path().join("pages");
    std::fs::create_dir_all(&pages).unwrap();
    let photo = jpeg(240, 180, 1);
    let img = image::load_from_memory(&photo).unwrap();
    let mut mirrored = std::io::Cursor::new(Vec::new());
    img.fliph()
        .write_to(&mut mirrored, image::ImageFormat::Png)
        .unwrap();
    std::fs::write(pages.join("photo.jpg"), &photo).unwrap();
    std::fs::write(pages.join("mirrored.png"), mirrored.into_inner()).unwrap();
    // A different picture: a blue-green gradient.
    let other = image::RgbImage::from_fn(200, 200, |x, y| {
        image::Rgb([10, (x + 40) as u8, (y + 55) as u8])
    });
    other.save(pages.join("other.jpg")).unwrap();
    std::fs::write(
        pages.join("page.html"),
        r#"<p>A photographer stands on the old bridge and looks at the river.</p>
        <img src="photo.jpg"><img src="mirrored.png"><img src="other.jpg">"#,
    )
    .unwrap();
    // Model-free encoder: the mirrored copy has the same colour histogram.
    let store = tmp.path().join("hist");
    realsyn(&[
        "build",
        "all",
        "--input",
        &s(&pages),
        "--store",
        &s(&store),
        "--image-encoder",
        "color-histogram",
    ]);
    let (_, kept, drops) = step(&funnel(&store), "image dedup");
    assert_eq!(
        (kept, drops.get("semantic near-duplicate").copied()),
        (2, Some(1)),
        "{drops:?}"
    );
    let emb = store.join("dedup-images/part-00000-of-00001/image_embeddings.npy");
    let (_, shape) = realsyn_io::npy::read_npy::<f32>(&emb).unwrap();
    assert_eq!(shape, vec![2, 512], "one embedding per kept image");
    // A CLIP image tower (the tiny open_clip model exported from PyTorch) as encoder.
    let weights = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity/tiny-gelu.safetensors");
    let store = tmp.path().join("clip");
    realsyn(&[
        "build",
        "all",
        "--input",
        &s(&pages),
        "--store",
        &s(&store),
        "--image-encoder",
        &s(&weights),
        "--semantic-threshold",
        "0.999999",
        "--image-encoder-arch",
        &s(&weights.with_file_name("tiny-gelu.json")),
    ]);
    let (_, shape) = realsyn_io::npy::read_npy::<f32>(
        &store.join("dedup-images/part-00000-of-00001/image_embeddings.npy"),
    )
    .unwrap();
    assert_eq!(
        shape[0], 3,
        "threshold near 1: nothing merged, every image embedded"
    );
}

#[test]
fn builds_the_wikipedia_excerpt() {
    let home = std::env::var("HOME").unwrap();
    let cache = std::env::var("REALSYN_CACHE").unwrap_or(format!("{home}/.cache/realsyn"));
    let dump = PathBuf::from(cache).join("gensim/enwiki-excerpt.xml.bz2");
    assert!(
        dump.exists(),
        "run scripts/setup-system.sh (fetches gensim's Wikipedia excerpt)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("wiki");
    realsyn(&[
        "build",
        "all",
        "--format",
        "mediawiki",
        "--input",
        dump.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--parts",
        "2",
        "--text-encoder",
        "bag-of-words",
    ]);
    let f = funnel(&store);
    let (docs, _, _) = step(&f, "ingest");
    let (segmented, _, _) = step(&f, "segment");
    let (_, kept, _) = step(&f, "near-exact dedup");
    assert!(docs >= 50, "{docs} articles");
    assert!(
        segmented > 10_000 && kept > 2_000,
        "{segmented} sentences, {kept} kept"
    );
    let part =
        std::fs::read_to_string(store.join("dedup-text/part-00000-of-00002/sentences.jsonl"))
            .unwrap();
    let row: serde_json::Value = serde_json::from_str(part.lines().next().unwrap()).unwrap();
    assert!(
        row["doc_url"]
            .as_str()
            .unwrap()
            .starts_with("https://en.wikipedia.org/wiki/")
    );
    let e = row["entropy"].as_f64().unwrap();
    assert!(e >= 0.3, "kept sentences pass the entropy filter: {e}");
    // Semantic dedup finds the article's own near-copy that the near-exact key
    // misses: "(IFPRI)" spelled out in one of two otherwise equal sentences.
    let (input, out, _) = step(&f, "semantic dedup");
    assert!(input == kept && out < input, "{input} -> {out}");
    let dropped = std::fs::read_to_string(
        store.join("dedup-text-semantic/part-00000-of-00001/dropped.jsonl"),
    )
    .unwrap();
    assert!(
        dropped.lines().any(
            |l| l.contains("International Food Policy Research Institute found")
                && l.contains("IFPRI found")
        ),
        "{dropped}"
    );
}

/// The perplexity filter end to end with a random-init GPT-2 exported from
/// `transformers` (tests/peer/gpt2_fixture.py): every sentence that reaches the step
/// is scored with transformers' perplexity and kept exactly when inside the range.
#[test]
fn perplexity_filter_scores_like_transformers() {
    #[derive(serde::Deserialize)]
    struct Row {
        text: String,
        perplexity: f64,
    }
    #[derive(serde::Deserialize)]
    struct Fixture {
        rows: Vec<Row>,
    }
    let gpt2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt2");
    let fx: Fixture =
        serde_json::from_slice(&std::fs::read(gpt2.join("tiny-outputs.json")).unwrap()).unwrap();
    let want: BTreeMap<&str, f64> = fx
        .rows
        .iter()
        .map(|r| (r.text.as_str(), r.perplexity))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs.jsonl");
    // One document per fixture sentence (NLTK's own segmentation, so Punkt keeps it whole).
    let lines: Vec<String> = fx
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::json!({"url": format!("https://example.org/{i}"), "text_list": [r.text], "image_info": []})
                .to_string()
        })
        .collect();
    std::fs::write(&docs, lines.join("\n")).unwrap();
    let mut ppls: Vec<f64> = want.values().copied().collect();
    ppls.sort_by(f64::total_cmp);
    let (lo, hi) = (ppls[ppls.len() / 4], ppls[ppls.len() * 3 / 4]);
    let store = tmp.path().join("store");
    realsyn(&[
        "build",
        "all",
        "--format",
        "mmc4",
        "--input",
        &s(&docs),
        "--store",
        &s(&store),
        "--no-cat",
        "--min-entropy",
        "0",
        "--gpt2",
        &s(&gpt2.join("tiny")),
        "--min-perplexity",
        &lo.to_string(),
        "--max-perplexity",
        &hi.to_string(),
        "--gpt2-batch-tokens",
        "256",
    ]);
    let f = funnel(&store);
    let (entropy_in, entropy_out, _) = step(&f, "entropy >= 0");
    let (ppl_in, ppl_out, drops) = step(&f, &format!("perplexity in [{lo}, {hi}]"));
    assert_eq!(entropy_in, entropy_out);
    assert_eq!(ppl_in, entropy_out, "every entropy survivor is scored");
    assert!(ppl_in >= 30, "{ppl_in} sentences reached the step");
    assert!(
        drops["perplexity too low"] > 0 && drops["perplexity too high"] > 0,
        "{drops:?}"
    );
    let rows = glob(&store.join("filter-text"), "sentences.jsonl");
    let mut kept = 0;
    for file in rows {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = row["text"].as_str().unwrap();
            let got = row["perplexity"].as_f64().unwrap();
            let peer = want[text];
            assert!(
                (got / peer - 1.0).abs() < 1e-4,
                "{text:?}: {got} vs transformers {peer}"
            );
            assert!((lo..=hi).contains(&got));
            kept += 1;
        }
    }
    assert_eq!(kept, ppl_out);
    // Every fixture sentence scored inside the range (away from the edges) was kept.
    let inside = want
        .values()
        .filter(|&&p| p > lo * 1.0001 && p < hi * 0.9999)
        .count() as u64;
    assert!(
        kept >= inside,
        "kept {kept}, transformers puts {inside} inside"
    );
}

/// Semantic sentence dedup: a reordered sentence escapes the near-exact key but not
/// the embedding links (bag-of-words baseline); a CLIP text tower (the tiny open_clip
/// model exported from PyTorch) runs the same pass and saves its embeddings.
#[test]
fn semantic_sentence_dedup_links_reorderings() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs.jsonl");
    let texts = [
        "The old fisherman repairs his torn nets on the wooden pier every morning.",
        "A young girl feeds the hungry ducks beside the frozen pond.",
        "Every morning the old fisherman repairs his torn nets on the wooden pier.",
        "Two cyclists race down the steep mountain road in heavy rain.",
    ];
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"url": format!("https://example.org/{i}"), "text_list": [t], "image_info": []})
                .to_string()
        })
        .collect();
    std::fs::write(&docs, lines.join("\n")).unwrap();
    let base = |store: &Path| {
        vec![
            "build".to_string(),
            "all".into(),
            "--format".into(),
            "mmc4".into(),
            "--input".into(),
            s(&docs),
            "--store".into(),
            s(store),
            "--no-cat".into(),
            "--min-entropy".into(),
            "0".into(),
        ]
    };
    let run = |args: Vec<String>| realsyn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let part = |store: &Path| store.join("dedup-text-semantic/part-00000-of-00001");

    let store = tmp.path().join("bow");
    let mut args = base(&store);
    args.extend(["--text-encoder".into(), "bag-of-words".into()]);
    run(args);
    let f = funnel(&store);
    assert_eq!(
        step(&f, "near-exact dedup").1,
        4,
        "word order defeats the near-exact key"
    );
    let (input, kept, drops) = step(&f, "semantic dedup");
    assert_eq!((input, kept), (4, 3), "{drops:?}");
    assert_eq!(drops["semantic near-duplicate"], 1);
    let dropped = std::fs::read_to_string(part(&store).join("dropped.jsonl")).unwrap();
    let row: serde_json::Value = serde_json::from_str(dropped.trim()).unwrap();
    assert_eq!(row["text"], texts[2], "the later occurrence is dropped");
    assert_eq!(row["duplicate_of"], texts[0]);
    let (_, shape) =
        realsyn_io::npy::read_npy::<f32>(&part(&store).join("text_embeddings.npy")).unwrap();
    assert_eq!(shape, vec![3, 512], "one embedding per kept sentence");

    // The tiny parity model's 1,000-token text vocabulary cannot take CLIP's tokens:
    // a clear error, not an out-of-range lookup.
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity/tiny-gelu.safetensors");
    let mut args = base(&tmp.path().join("tiny"));
    args.extend([
        "--text-encoder".into(),
        s(&tiny),
        "--text-encoder-arch".into(),
    ]);
    args.push(s(&tiny.with_file_name("tiny-gelu.json")));
    let out = Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(&args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("smaller than CLIP's tokenizer"));

    // A small random CLIP with CLIP's full vocabulary (`realsyn init`).
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny.with_file_name("tiny-gelu.json")).unwrap())
            .unwrap();
    cfg["text_cfg"]["vocab_size"] = 49408.into();
    let cfg_path = tmp.path().join("tiny-full-vocab.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let weights = tmp.path().join("tiny-full-vocab.safetensors");
    realsyn(&["init", "--arch", &s(&cfg_path), "--output", &s(&weights)]);
    let store = tmp.path().join("clip");
    let mut args = base(&store);
    args.extend([
        "--text-encoder".into(),
        s(&weights),
        "--text-semantic-threshold".into(),
        "0.999999".into(),
    ]);
    run(args);
    let (input, kept, _) = step(&funnel(&store), "semantic dedup");
    assert_eq!(
        (input, kept),
        (4, 4),
        "threshold near 1: different token sequences stay apart"
    );
    let (_, shape) =
        realsyn_io::npy::read_npy::<f32>(&part(&store).join("text_embeddings.npy")).unwrap();
    assert_eq!(shape[0], 4);
}

/// The build recipe: a store started with flags records its settings as
/// `recipe.toml`; `--recipe` with that file builds a byte-identical store, `--set`
/// changes one key (and a store started otherwise refuses it), and typos are refused
/// with the keys that exist.
#[test]
fn a_build_recipe_rebuilds_the_same_store() {
    let tmp = tempfile::tempdir().unwrap();
    let input = common::gimp_pages(tmp.path(), "gimp-tool-", 8);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let flags = [
        "--input",
        &s(&input),
        "--parts",
        "2",
        "--no-fetch",
        "--min-entropy",
        "0.35",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        ["build", "all"]
            .iter()
            .chain(flags.iter())
            .chain(extra)
            .map(|x| x.to_string())
            .collect()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    realsyn(&args(&with(&["--store", &s(&a)])));
    let recipe = a.join("recipe.toml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(
        text.contains("min_entropy = 0.35") && text.contains("parts = 2"),
        "{text}"
    );
    let printed = realsyn(&args(&with(&["--print-recipe"])));
    assert_eq!(String::from_utf8_lossy(&printed.stdout), text);

    realsyn(&["build", "all", "--recipe", &s(&recipe), "--store", &s(&b)]);
    assert_eq!(tree(&a), tree(&b));

    // --set changes a key: the store started with 0.35 refuses it, a new one takes it.
    let set = ["--set", "min_entropy=0.5"];
    let refused = common::realsyn(
        &[
            &["build", "all", "--recipe", &s(&recipe), "--store", &s(&a)][..],
            &set[..],
        ]
        .concat(),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("other settings"));
    let c = tmp.path().join("c");
    realsyn(
        &[
            &["build", "all", "--recipe", &s(&recipe), "--store", &s(&c)][..],
            &set[..],
        ]
        .concat(),
    );
    assert!(
        std::fs::read_to_string(c.join("recipe.toml"))
            .unwrap()
            .contains("min_entropy = 0.5")
    );
    let (_, kept_a, _) = step(&funnel(&a), "entropy >= 0.35");
    let (_, kept_c, _) = step(&funnel(&c), "entropy >= 0.5");
    assert!(
        kept_c < kept_a,
        "a higher entropy floor keeps fewer: {kept_c} vs {kept_a}"
    );

    let typo = common::realsyn(&[
        "build",
        "all",
        "--recipe",
        &s(&recipe),
        "--set",
        "min_entropi=0.5",
        "--print-recipe",
    ]);
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(
        !typo.status.success() && err.contains("min_entropi") && err.contains("min_entropy"),
        "{err}"
    );
    // Flags beside a recipe would be silently shadowed: refused.
    let both = common::realsyn(&[
        "build",
        "all",
        "--recipe",
        &s(&recipe),
        "--min-entropy",
        "0.4",
        "--print-recipe",
    ]);
    assert!(!both.status.success());
}
