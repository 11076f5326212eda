//! Hostile local input: pages that name files outside the corpus (`/etc/...`,
//! `../`), endless or blocking files (`/dev/zero`, a FIFO), an oversized file, and a
//! corpus folder with link loops, a FIFO named `*.html` and a page of 100k nested
//! elements. The build ends (quickly), reads
//! nothing it should not, names every drop, and ingests each page once.

use std::path::Path;
use std::process::Command;

use realsyn_builder::extract::ingest::Format;
use realsyn_builder::pipeline::Models;
use realsyn_builder::pipeline::run_all;
use realsyn_builder::store::manifest::{FetchSettings, Manifest};

fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    // Pseudo-random pixels: PNG cannot compress them (w x h x 3 bytes and more).
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ seed as u32)
            .wrapping_mul(2246822519);
        image::Rgb([(v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo {}", p.display());
}

#[test]
fn local_paths_stay_inside_the_input_and_loops_end() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(corpus.join("a")).unwrap();
    std::fs::write(corpus.join("ok.png"), png(200, 160, 3)).unwrap();
    std::fs::write(corpus.join("big.png"), png(400, 400, 5)).unwrap();
    std::fs::write(tmp.path().join("outside.png"), png(200, 160, 7)).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside.png"), corpus.join("link-out.png"))
        .unwrap();
    mkfifo(&corpus.join("fifo.png"));
    mkfifo(&corpus.join("blocked.html"));
    // 100k nested elements (1.1 MB): quadratic in html5ever, skipped by depth.
    std::fs::write(
        corpus.join("a/deep.html"),
        format!(
            "<html><body>{}x{}</body></html>",
            "<div>".repeat(100_000),
            "</div>".repeat(100_000)
        ),
    )
    .unwrap();
    // Loops: a link to the parent, a link to the folder itself.
    std::os::unix::fs::symlink("..", corpus.join("a/up")).unwrap();
    std::os::unix::fs::symlink(".", corpus.join("self")).unwrap();
    let srcs = [
        "ok.png",
        "/dev/zero",
        "/etc/passwd",
        "../outside.png",
        "link-out.png",
        "fifo.png",
        "big.png",
    ];
    let imgs: String = srcs.iter().map(|s| format!("<img src=\"{s}\">")).collect();
    std::fs::write(
        corpus.join("page.html"),
        format!(
            "<html><body><p>The tool draws a line between the two points you click.</p>{imgs}</body></html>"
        ),
    )
    .unwrap();
    let manifest = Manifest {
        format: Format::Html,
        inputs: vec![corpus.clone()],
        parts: 1,
        min_entropy: 0.0,
        max_hamming: 4,
        images_per_tar: 100,
        fetch: Some(FetchSettings {
            timeout_secs: 1.0,
            retries: 0,
            // ok.png fits, big.png does not.
            max_bytes: 200_000,
            threads: 1,
        }),
        semantic: None,
        cat_wordnet: None,
        perplexity: None,
        text_semantic: None,
        pairing: None,
        generation: None,
        balance: None,
        dataset: None,
        images_outside_input: false,
    };
    assert!(png(400, 400, 5).len() > 300_000 && png(200, 160, 3).len() < 100_000 + 10);
    let store = tmp.path().join("store");
    let funnel = run_all(&store, &manifest, Models::default()).unwrap();
    let step = |name: &str| {
        funnel
            .steps
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .clone()
    };
    let ingest = step("ingest");
    assert_eq!(
        ingest.output, 1,
        "one page, read once despite the loops: {ingest:?}"
    );
    // The FIFO named blocked.html is not opened, but counted.
    assert_eq!(ingest.dropped["not a regular file"], 1, "{ingest:?}");
    let skips =
        std::fs::read_to_string(store.join("extract/part-00000-of-00001/skips.jsonl")).unwrap();
    assert!(
        skips
            .lines()
            .any(|l| l.contains("blocked.html") && l.contains("not a regular file")),
        "{skips}"
    );
    let read = step("read image");
    assert_eq!((read.input, read.output), (7, 1), "{read:?}");
    // /dev/zero, /etc/passwd, ../outside.png and a link leading out.
    assert_eq!(read.dropped["local path outside the input"], 4, "{read:?}");
    assert_eq!(read.dropped["not a regular file"], 1, "the FIFO: {read:?}");
    assert_eq!(read.dropped["file too large"], 1, "{read:?}");

    // Allowed outside: /etc/passwd and the outside PNG are read (the first is no
    // image); /dev/zero is still not a regular file.
    let open = Manifest {
        images_outside_input: true,
        ..manifest
    };
    let funnel = run_all(&tmp.path().join("open"), &open, Models::default()).unwrap();
    let read = funnel
        .steps
        .iter()
        .find(|s| s.name == "read image")
        .unwrap();
    assert_eq!(read.output, 3, "ok.png and outside.png twice: {read:?}");
    assert_eq!(read.dropped["not a regular file"], 2, "{read:?}");
}
