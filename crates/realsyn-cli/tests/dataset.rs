//! The balance and write stages end to end on 12 pages of the GIMP manual with a
//! small random CLIP (tests/fixtures/tagger): the dataset realsyn writes is what
//! Python `webdataset` and open_clip's training loader read
//! (tests/fixtures/dataset/python-read.json, from tests/peer/dataset_interop.py,
//! which runs the same build), the caps hold per image cluster, the variants nest,
//! the random baseline matches the balanced size, a split or interrupted write
//! gives the same bytes, and `realsyn train` trains on a variant.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{GIMP, gimp_pages, ok, tree};
use realsyn_data::wds::{SkipCounter, read_shard};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> Value {
    let p = root().join("tests/fixtures/dataset/python-read.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// The fixture's build, on pages copied into `tmp`, into `store`.
fn build_args(fx: &Value, input: &Path, store: &Path) -> Vec<String> {
    let root = std::fs::canonicalize(root()).unwrap();
    fx["build_args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("{input}", input.to_str().unwrap())
                .replace("{store}", store.to_str().unwrap())
                .replace("{root}", root.to_str().unwrap())
        })
        .collect()
}

fn run(args: &[String]) {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Every sample of a variant folder: key -> (txt, json, jpg bytes).
fn read_variant(dir: &Path) -> BTreeMap<String, (String, Value, Vec<u8>)> {
    let skips = SkipCounter::new();
    let mut out = BTreeMap::new();
    for t in &realsyn_builder::store::tars_in(dir).unwrap() {
        for s in read_shard(t, &skips) {
            let txt = String::from_utf8(s.get("txt").unwrap().to_vec()).unwrap();
            let json: Value = serde_json::from_slice(s.get("json").unwrap()).unwrap();
            out.insert(s.key.clone(), (txt, json, s.get("jpg").unwrap().to_vec()));
        }
    }
    assert_eq!(skips.total(), 0, "{dir:?}: skipped samples");
    out
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(b))
}

#[test]
fn written_dataset_is_what_python_and_open_clip_read() {
    assert!(Path::new(GIMP).exists(), "run scripts/setup-system.sh");
    let fx = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let pages = fx["pages"].as_u64().unwrap() as usize;
    let input = gimp_pages(tmp.path(), "gimp-tool-", pages);
    let store = tmp.path().join("store");
    run(&build_args(&fx, &input, &store));

    let rerun_hint = "re-run tests/peer/dataset_interop.py if the writer changed on purpose";
    let mut variants: BTreeMap<String, BTreeMap<String, (String, Value, Vec<u8>)>> =
        BTreeMap::new();
    for (name, py) in fx["variants"].as_object().unwrap() {
        let dir = store.join("dataset").join(name);
        let ours = read_variant(&dir);
        let theirs = py["samples"].as_object().unwrap();
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{name}: keys; {rerun_hint}"
        );
        let mut texts = Vec::new();
        for (key, (txt, json, jpg)) in &ours {
            let p = &theirs[key];
            assert_eq!(txt, p["txt"].as_str().unwrap(), "{name}/{key}.txt");
            for (field, v) in p["json"].as_object().unwrap() {
                assert_eq!(&json[field], v, "{name}/{key}.json {field}; {rerun_hint}");
            }
            assert_eq!(sha256(jpg), p["jpg_sha256"], "{name}/{key}.jpg");
            let img = image::load_from_memory(jpg).unwrap();
            assert_eq!(
                [img.width(), img.height()],
                [64, 64],
                "resized to 64:center_crop"
            );
            assert_eq!(json["text1"].as_str(), Some(txt.as_str()));
            texts.push(txt.clone());
        }
        // open_clip's loader: sizes.json gives its sample count, and the captions
        // it tokenized are ours tokenized by realsyn's tokenizer.
        let sizes: BTreeMap<String, u64> =
            serde_json::from_slice(&std::fs::read(dir.join("sizes.json")).unwrap()).unwrap();
        assert_eq!(
            sizes.values().sum::<u64>(),
            py["open_clip_train_num_samples"].as_u64().unwrap()
        );
        assert_eq!(sizes.values().sum::<u64>() as usize, ours.len());
        let txt_file = tmp.path().join(format!("{name}.txt"));
        std::fs::write(&txt_file, texts.join("\n")).unwrap();
        let ids_file = tmp.path().join(format!("{name}.npy"));
        ok(&[
            "tokenize",
            "--input",
            txt_file.to_str().unwrap(),
            "--output",
            ids_file.to_str().unwrap(),
        ]);
        let (ids, shape) = realsyn_io::npy::read_npy::<i64>(&ids_file)
            .or_else(|_| {
                realsyn_io::npy::read_npy::<i32>(&ids_file)
                    .map(|(v, s)| (v.into_iter().map(i64::from).collect(), s))
            })
            .unwrap();
        let mut rows: Vec<Vec<i64>> = ids
            .chunks(shape[1])
            .map(|r| r.iter().copied().filter(|&t| t != 0).collect())
            .collect();
        rows.sort();
        let theirs: Vec<Vec<i64>> = serde_json::from_value(py["open_clip_tokens"].clone()).unwrap();
        assert_eq!(rows, theirs, "{name}: open_clip's tokenized captions");
        // Every shard has its parquet (one row per sample tried) and stats.
        for shard in sizes.keys() {
            let stem = shard.trim_end_matches(".tar");
            let stats: Value = serde_json::from_slice(
                &std::fs::read(dir.join(format!("{stem}_stats.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(stats["successes"], sizes[shard]);
            assert!(dir.join(format!("{stem}.parquet")).is_file());
        }
        variants.insert(name.clone(), ours);
    }

    // Balance: caps per image cluster, nesting, the random baseline's size.
    let ids = |v: &str| -> BTreeSet<String> {
        variants[v]
            .values()
            .map(|(_, j, _)| j["image_id"].as_str().unwrap().to_string())
            .collect()
    };
    for (v, cap) in [("balanced-2", 2), ("balanced-4", 4)] {
        let mut per_cluster: BTreeMap<u64, usize> = BTreeMap::new();
        for (_, j, _) in variants[v].values() {
            *per_cluster
                .entry(j["image_cluster"].as_u64().unwrap())
                .or_default() += 1;
        }
        assert!(
            per_cluster.values().all(|&n| n <= cap),
            "{v}: {per_cluster:?}"
        );
    }
    assert!(ids("balanced-2").is_subset(&ids("balanced-4")));
    assert!(ids("balanced-4").is_subset(&ids("all")));
    assert_eq!(ids("random-2").len(), ids("balanced-2").len());
    assert_ne!(ids("random-2"), ids("balanced-2"));
    let summary: Value = serde_json::from_slice(
        &std::fs::read(store.join("balance/part-00000-of-00001/balance.json")).unwrap(),
    )
    .unwrap();
    assert!(summary["applied"]["dropped_fraction"].as_f64().unwrap() > 0.0);
    assert!(summary["paper_band"]["dropped_fraction"].is_number());
    let funnel = std::fs::read_to_string(store.join("funnel.md")).unwrap();
    assert!(funnel.contains("semantic balance: cosine band"), "{funnel}");

    // The same dataset written in two parts, after a killed run's leftovers (a
    // half-written temporary tar, a shard written before the kill): same bytes.
    let written = tree(&store.join("dataset"));
    std::fs::remove_dir_all(store.join("write")).unwrap();
    let all = store.join("dataset/all");
    std::fs::remove_file(all.join("00003.tar")).unwrap();
    std::fs::remove_file(all.join("sizes.json")).unwrap();
    std::fs::write(all.join(".00004.tar.999.tmp"), b"half a tar").unwrap();
    let s = store.to_str().unwrap();
    ok(&["build", "write", "--store", s, "--shard", "1/2"]);
    assert!(
        !all.join("sizes.json").exists(),
        "sizes.json before every part is done"
    );
    ok(&["build", "write", "--store", s, "--shard", "0/2"]);
    std::fs::remove_file(all.join(".00004.tar.999.tmp")).unwrap();
    assert!(
        tree(&store.join("dataset")) == written,
        "the split rewrite differs"
    );

    // realsyn train reads a variant, drawing among each image's texts.
    let run_dir = tmp.path().join("run");
    let recipe = tmp.path().join("train.toml");
    std::fs::write(
        &recipe,
        format!(
            "[model]\narch = \"{}\"\n[data]\ntrain = \"{}/dataset/balanced-4/{{00000..00006}}.tar\"\n\
             text_keys = [\"txt\", \"json.text2\", \"json.text3\", \"json.syn_text\"]\nworkers = 1\n\
             shuffle_buffer = 16\n[train]\nepochs = 1\nbatch_size = 8\nlr = 1e-3\nseed = 0\n\
             [output]\ndir = \"{}\"\ncheckpoint_every = 100\nlog_every = 1\n",
            root().join("recipes/models/fashion-mnist-tiny.json").display(),
            s,
            run_dir.display()
        ),
    )
    .unwrap();
    ok(&["train", "--recipe", recipe.to_str().unwrap()]);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["steps"], 3,
        "26 samples in full batches of 8: {summary}"
    );
}

/// Chromium (headless) on the `realsyn view` page: `?q=` filters, images render.
/// Each call gets a fresh profile and a time limit; a call that hangs (Chromium's
/// virtual-time mode now and then never ends a load, even of a file:// page) is
/// retried, twice at most.
fn chromium(args: &[&str]) -> std::process::Output {
    const ATTEMPTS: usize = 3;
    for attempt in 0..ATTEMPTS {
        let profile = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("timeout")
            .args([
                "60",
                "chromium",
                "--headless",
                "--no-sandbox",
                // Without a zygote: under load a full CI run once saw all three
                // attempts hang on "Failed to send GetTerminationStatus message to
                // zygote".
                "--no-zygote",
                "--disable-gpu",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--virtual-time-budget=8000"])
            .args(args)
            .output()
            .expect("chromium runs (scripts/setup-system.sh installs it)");
        if out.status.code() != Some(124) || attempt == ATTEMPTS - 1 {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return out;
        }
    }
    unreachable!()
}

fn chromium_dom(url: &str) -> String {
    String::from_utf8(chromium(&["--dump-dom", url]).stdout).unwrap()
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

#[test]
fn view_page_lists_searches_and_renders_samples_in_chromium() {
    assert!(Path::new(GIMP).exists(), "run scripts/setup-system.sh");
    let fx = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let input = gimp_pages(
        tmp.path(),
        "gimp-tool-",
        fx["pages"].as_u64().unwrap() as usize,
    );
    let store = tmp.path().join("store");
    run(&build_args(&fx, &input, &store));
    let s = store.to_str().unwrap();
    ok(&["build", "report", "--store", s]);
    let samples = read_variant(&store.join("dataset/balanced-4"));
    let site = tmp.path().join("site");
    ok(&[
        "view",
        "--store",
        s,
        "--variant",
        "balanced-4",
        "--no-serve",
        "--out",
        site.to_str().unwrap(),
    ]);
    // A word of some sample's texts that not every sample has; the page must show
    // exactly the samples whose texts, caption or tags contain it.
    let haystack = |j: &Value| {
        let tags: Vec<&str> = j["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(|x| x[0].as_str()).collect())
            .unwrap_or_default();
        ["text1", "text2", "text3", "syn_text", "caption"]
            .iter()
            .filter_map(|k| j[*k].as_str())
            .chain(tags)
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let matching = |w: &str| {
        samples
            .values()
            .filter(|(_, j, _)| haystack(j).contains(w))
            .count()
    };
    let word = samples
        .values()
        .flat_map(|(_, j, _)| {
            haystack(j)
                .split_whitespace()
                .filter(|w| w.len() > 4 && w.chars().all(char::is_alphabetic))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .find(|w| (1..samples.len()).contains(&matching(w)))
        .expect("a word some samples have");
    let expected = matching(&word);
    assert!(
        expected >= 1 && expected < samples.len(),
        "{word}: {expected}"
    );
    let n = samples.len();

    let file = format!("file://{}/index.html", site.display());
    let dom = chromium_dom(&file);
    assert_eq!(
        count(&dom, "class=\"sample shown\""),
        n,
        "every sample listed"
    );
    assert_eq!(count(&dom, "data-loaded=\"1\""), n, "every image rendered");
    assert_eq!(
        count(&dom, "class=\"t realistic\""),
        3 * n,
        "3 realistic texts each"
    );
    assert!(dom.contains("semantic balance: cosine band"), "the funnel");
    assert!(dom.contains("report/clusters.svg"), "the charts");
    let dom = chromium_dom(&format!("{file}?q={word}"));
    assert_eq!(
        count(&dom, "class=\"sample shown\""),
        expected,
        "search {word:?}"
    );
    // A screenshot of the page: a real picture, not a blank one.
    let shot = tmp.path().join("view.png");
    chromium(&[
        "--window-size=1200,900",
        &format!("--screenshot={}", shot.display()),
        &file,
    ]);
    let png = image::open(&shot).unwrap().to_rgb8();
    let distinct: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    assert!(
        distinct.len() > 500,
        "a near-blank screenshot: {} colours",
        distinct.len()
    );

    // Served on loopback by the binary: the same page.
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args([
            "view",
            "--store",
            s,
            "--variant",
            "balanced-4",
            "--addr",
            "127.0.0.1:0",
        ])
        .arg("--out")
        .arg(tmp.path().join("served"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(server.stderr.take().unwrap()));
    let url = loop {
        let line = lines
            .next()
            .expect("the server says where it serves")
            .unwrap();
        if let Some(rest) = line.strip_prefix("view: serving ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let dom = chromium_dom(&format!("{url}?q={word}"));
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(count(&dom, "class=\"sample shown\""), expected);
    assert_eq!(count(&dom, "data-loaded=\"1\""), n);
}
