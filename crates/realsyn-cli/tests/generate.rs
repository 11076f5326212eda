//! The generate stage (paper §3.2 image semantic augmented generation) end to end on
//! the GIMP manual: captions from alt text, CLIP tags, and the merge through (1) an
//! OpenAI-compatible server on loopback that fails on purpose, with a SIGKILL in the
//! middle of the stage and a rerun giving byte-identical samples; (2) the embedded
//! SmolLM2 GGUF on a few pages. The CLIP is a small random one (`realsyn init`): the
//! test checks mechanics and provenance, not relevance.

mod common;
#[path = "../../../tests/common/fault_server.rs"]
mod fault_server;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{GIMP, gimp_pages, ok, tiny_clip};
use fault_server::{Fault, FaultServer};

fn samples(store: &Path) -> Vec<serde_json::Value> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(store.join("generate"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p.join("samples.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn read_parts(store: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(store.join("generate")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")
        {
            for f in ["samples.jsonl", "funnel.json"] {
                out.push((p.join(f), std::fs::read(p.join(f)).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `realsyn build all` over `input` into `store`, paired by `weights` and merged by
/// `llm`, then `extra` (the part each test varies).
fn build_all(input: &Path, store: &Path, weights: &Path, llm: &str, extra: &[&str]) -> Vec<String> {
    let common = [
        "build",
        "all",
        "--input",
        input.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--pair-encoder",
        weights.to_str().unwrap(),
        "--llm",
        llm,
    ];
    common.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn ok_all(args: &[String]) -> std::process::Output {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn server_merge_counts_failures_and_resumes_identically_after_sigkill() {
    assert!(Path::new(GIMP).exists(), "run scripts/setup-system.sh");
    let tmp = tempfile::tempdir().unwrap();
    let weights = tiny_clip(tmp.path());
    let input = gimp_pages(tmp.path(), "gimp-tool-", 60);
    // Transient faults first (retried, so they change nothing), then normal answers;
    // one prompt in ten gets an empty reply, every time.
    let server = FaultServer::start(vec![
        Fault::Status500,
        Fault::RateLimited(0),
        Fault::Reset,
        Fault::Malformed,
    ]);
    let store_a = tmp.path().join("a");
    ok_all(&build_all(
        &input,
        &store_a,
        &weights,
        &server.url,
        &[
            "--parts",
            "2",
            "--llm-model",
            "fault-server",
            "--mined-tags",
            "100",
            "--tag-min-cosine",
            "-1",
            "--tag-top-k",
            "5",
            "--llm-retries",
            "3",
            "--llm-timeout",
            "5",
            // Balance on the synthetic texts and the dataset with them.
            "--balance-caps",
            "6",
            "--balance-band",
            "q0.02..q0.98",
            "--pairs-per-image-cluster",
            "16",
            "--dataset",
            "--samples-per-shard",
            "32",
        ],
    ));
    let rows = samples(&store_a);
    assert!(rows.len() > 50, "{} paired images", rows.len());
    let mut empty = 0;
    for r in &rows {
        let raw = r["texts"][0]["text"].as_str().unwrap();
        assert_eq!(r["tags"].as_array().unwrap().len(), 5);
        let cap = &r["caption"];
        match r["alt"].as_str().map(str::trim).filter(|a| !a.is_empty()) {
            Some(alt) => assert_eq!(
                (cap["text"].as_str(), cap["source"].as_str()),
                (Some(alt), Some("alt-text"))
            ),
            None => assert_eq!(cap["source"], "none"),
        }
        match r["synthetic"].as_array().unwrap().first() {
            Some(s) => {
                let text = s["text"].as_str().unwrap();
                assert!(
                    text.starts_with("A synthetic text about: ")
                        && raw.starts_with(&text[24..].trim_end()[..10.min(text.len() - 24)]),
                    "{text} / {raw}"
                );
                assert_eq!(s["from_text"], 0);
                assert_eq!(s["finish_reason"], "stop");
                assert!(
                    s["model"]
                        .as_str()
                        .unwrap()
                        .starts_with("fault-server @ http://127.0.0.1")
                );
                assert_eq!(s["template_sha256"].as_str().unwrap().len(), 16);
            }
            None => {
                assert_eq!(r["synthetic_missing"][0], "LLM reply empty");
                empty += 1;
            }
        }
    }
    assert!(
        empty > 0 && empty < rows.len() / 4,
        "{empty} empty of {}",
        rows.len()
    );
    let funnel = std::fs::read_to_string(store_a.join("funnel.md")).unwrap();
    assert!(
        funnel.contains("LLM merge (synthetic text)") && funnel.contains("LLM reply empty"),
        "{funnel}"
    );
    // Balance scored the synthetic texts (text1 only where the merge failed), and
    // the shards carry them.
    let balance: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store_a.join("balance/part-00000-of-00001/balance.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(balance["source"], "generate");
    assert_eq!(balance["scored_on_text1"], empty);
    let by_image: std::collections::HashMap<String, &serde_json::Value> = rows
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect();
    let skips = realsyn_data::wds::SkipCounter::new();
    let mut written = 0;
    for e in std::fs::read_dir(store_a.join("dataset/balanced-6")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "tar") {
            continue;
        }
        for s in realsyn_data::wds::read_shard(&p, &skips) {
            let j: serde_json::Value = serde_json::from_slice(s.get("json").unwrap()).unwrap();
            let row = by_image[j["image_id"].as_str().unwrap()];
            let syn = row["synthetic"]
                .as_array()
                .unwrap()
                .first()
                .map(|x| &x["text"]);
            assert_eq!(j.get("syn_text"), syn, "{j}");
            assert_eq!(
                j["balance_text"],
                if syn.is_some() { "syn_text" } else { "text1" }
            );
            assert_eq!(j["caption_source"], row["caption"]["source"]);
            assert_eq!(j["tags"].as_array().unwrap().len(), 5);
            written += 1;
        }
    }
    assert!(written > 20, "{written} samples in balanced-6");

    // Store b: the same build up to retrieve, then generate killed mid-way and rerun.
    let store_b = tmp.path().join("b");
    std::fs::create_dir_all(&store_b).unwrap();
    for e in std::fs::read_dir(&store_a).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name != "generate" {
            let status = Command::new("cp")
                .arg("-r")
                .arg(&p)
                .arg(store_b.join(&name))
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    *server.delay.lock().unwrap() = Duration::from_millis(60);
    let mut child = Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(["build", "generate", "--store", store_b.to_str().unwrap()])
        .args(["--llm-concurrency", "2"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal = store_b.join("generate/work/part-00000-of-00002.merge.jsonl");
    let start = Instant::now();
    while std::fs::read(&journal).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no journal written"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "generate finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!store_b.join("generate/part-00000-of-00002").exists());
    let before = server.requests.load(std::sync::atomic::Ordering::SeqCst);
    *server.delay.lock().unwrap() = Duration::ZERO;
    ok(&["build", "generate", "--store", store_b.to_str().unwrap()]);
    let resent = server.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        resent < rows.len(),
        "the rerun sent {resent} requests for {} images: journaled work was redone",
        rows.len()
    );
    assert_eq!(read_parts(&store_a).len(), 4);
    let (a_parts, b_parts) = (read_parts(&store_a), read_parts(&store_b));
    for ((pa, ba), (_, bb)) in a_parts.iter().zip(&b_parts) {
        assert!(ba == bb, "{} differs after SIGKILL + resume", pa.display());
    }
    assert!(
        !journal.exists(),
        "the journal is removed once the part is committed"
    );
}

#[test]
fn embedded_smollm2_writes_synthetic_texts_with_provenance() {
    assert!(Path::new(GIMP).exists(), "run scripts/setup-system.sh");
    let tmp = tempfile::tempdir().unwrap();
    let weights = tiny_clip(tmp.path());
    let input = gimp_pages(tmp.path(), "gimp-tool-airbrush", 1);
    let store = tmp.path().join("s");
    ok_all(&build_all(
        &input,
        &store,
        &weights,
        "embedded",
        &[
            "--clusters",
            "2",
            "--no-tags",
            "--llm-max-tokens",
            "160",
            "--llm-batch",
            "4",
        ],
    ));
    let rows = samples(&store);
    assert!(!rows.is_empty());
    let texts: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r["synthetic"].as_array().unwrap().clone())
        .map(|s| {
            assert_eq!(s["model"], "embedded SmolLM2-135M-Instruct.Q4_1.gguf");
            s["text"].as_str().unwrap().to_string()
        })
        .collect();
    for r in &rows {
        let n = r["synthetic"].as_array().unwrap().len()
            + r.get("synthetic_missing")
                .map_or(0, |m| m.as_array().unwrap().len());
        assert_eq!(n, 1, "one synthetic text or its reason per image");
    }
    assert!(
        !texts.is_empty(),
        "SmolLM2 wrote no synthetic text for {} images",
        rows.len()
    );
    eprintln!("{} images, e.g. {:?}", rows.len(), texts.iter().next());
}

/// `realsyn llm serve` answers as transformers generates: the greedy texts of the
/// SmolLM2 fixture, for requests sent one at a time and four at once (one batch); and
/// the builder uses it as its --llm server.
#[test]
fn llm_serve_gives_the_peer_greedy_texts_and_serves_the_builder() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    /// Kills the server however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(
        Command::new(env!("CARGO_BIN_EXE_realsyn"))
            .args(["llm", "serve", "--addr", &addr, "--batch", "4"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{addr}/v1");
    let start = Instant::now();
    while ureq::get(&format!("http://{addr}/health")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "llm serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let fixture: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama/prompts.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let rows = fixture["prompts"].as_array().unwrap();
    let ask = |i: usize| -> serde_json::Value {
        let body = serde_json::json!({
            "model": "smollm2", "temperature": 0, "max_tokens": 40, "seed": 1,
            "messages": [{"role": "user", "content": rows[i]["user"]}],
        });
        let resp = ureq::post(&format!("{base}/chat/completions"))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
            .unwrap();
        serde_json::from_str(&resp.into_string().unwrap()).unwrap()
    };
    let check = |i: usize, v: &serde_json::Value| {
        let want = rows[i]["greedy_text"].as_str().unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"].as_str().unwrap(),
            want,
            "prompt {i}"
        );
        let stopped =
            rows[i]["greedy_ids"].as_array().unwrap().last() == Some(&serde_json::json!(2));
        assert_eq!(
            v["choices"][0]["finish_reason"],
            if stopped { "stop" } else { "length" }
        );
    };
    check(30, &ask(30));
    let answers: Vec<serde_json::Value> = std::thread::scope(|s| {
        let hs: Vec<_> = (40..44).map(|i| s.spawn(move || ask(i))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, v) in answers.iter().enumerate() {
        check(40 + k, v);
    }
    let bad = ureq::post(&format!("{base}/chat/completions")).send_string("{oops");
    assert!(matches!(bad, Err(ureq::Error::Status(400, _))));

    // The builder with the server as its LLM.
    let tmp = tempfile::tempdir().unwrap();
    let weights = tiny_clip(tmp.path());
    let input = gimp_pages(tmp.path(), "gimp-tool-airbrush", 1);
    let store = tmp.path().join("s");
    ok_all(&build_all(
        &input,
        &store,
        &weights,
        &base,
        &["--clusters", "2", "--no-tags", "--llm-max-tokens", "160"],
    ));
    let rows = samples(&store);
    assert!(
        rows.iter()
            .any(|r| !r["synthetic"].as_array().unwrap().is_empty())
    );
    for r in &rows {
        for s in r["synthetic"].as_array().unwrap() {
            assert_eq!(s["model"].as_str().unwrap(), format!("default @ {base}"));
        }
    }
}

/// Offline batch mode: the first run writes every request as OpenAI Batch JSONL and
/// stops with the `vllm run-batch` command; once the results file exists (played here
/// by answering each request as the fault server would), the rerun finishes the part.
#[test]
fn offline_batch_mode_writes_requests_then_reads_the_results() {
    assert!(Path::new(GIMP).exists(), "run scripts/setup-system.sh");
    let tmp = tempfile::tempdir().unwrap();
    let weights = tiny_clip(tmp.path());
    let input = gimp_pages(tmp.path(), "gimp-tool-airbrush", 1);
    let (store, batch) = (tmp.path().join("s"), tmp.path().join("batch"));
    let llm = format!("batch:{}", batch.display());
    let args = build_all(
        &input,
        &store,
        &weights,
        &llm,
        &[
            "--clusters",
            "2",
            "--llm-model",
            "realsyn-merge",
            "--no-tags",
        ],
    );
    let first = Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(&args)
        .output()
        .unwrap();
    assert!(!first.status.success());
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        err.contains("vllm run-batch -i") && err.contains("--model realsyn-merge"),
        "{err}"
    );
    let requests = std::fs::read_to_string(batch.join("requests.jsonl")).unwrap();
    let mut results = String::new();
    for line in requests.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["url"], "/v1/chat/completions");
        assert_eq!(v["body"]["model"], "realsyn-merge");
        let prompt = v["body"]["messages"][0]["content"].as_str().unwrap();
        let content = format!("Batch answer: {}", &prompt[prompt.len() - 30..]);
        results += &serde_json::json!({"id": "x", "custom_id": v["custom_id"], "error": null,
            "response": {"status_code": 200, "body": {"choices": [{"index": 0,
            "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}}})
        .to_string();
        results.push('\n');
    }
    std::fs::write(batch.join("results.jsonl"), results).unwrap();
    ok_all(&args);
    let rows = samples(&store);
    assert_eq!(
        rows.len(),
        requests.lines().count(),
        "one request per image"
    );
    for r in &rows {
        let s = &r["synthetic"][0];
        assert!(
            s["text"].as_str().unwrap().starts_with("Batch answer: "),
            "{r}"
        );
        assert_eq!(s["model"], "realsyn-merge (offline batch)");
    }
}

/// `--captioner DIR` runs GIT from a Hugging Face snapshot (the reduced GIT of the
/// parity fixture, random weights: mechanics and provenance, not relevance): every
/// image gets a caption from it, recorded with the model id, and the funnel counts
/// captions as passed; a second build of the same store gives the same captions.
#[test]
fn git_snapshot_captions_every_image() {
    assert!(Path::new(GIMP).exists(), "run scripts/setup-system.sh");
    let tmp = tempfile::tempdir().unwrap();
    let weights = tiny_clip(tmp.path());
    let input = gimp_pages(tmp.path(), "gimp-tool-", 3);
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/git/tiny");
    let server = FaultServer::start(vec![]);
    let build = |store: &Path, beams: &str| {
        ok_all(&build_all(
            &input,
            store,
            &weights,
            &server.url,
            &[
                "--clusters",
                "2",
                "--no-tags",
                "--captioner",
                snapshot.to_str().unwrap(),
                "--caption-beams",
                beams,
                "--caption-max-tokens",
                "12",
            ],
        ));
        samples(store)
    };
    let rows = build(&tmp.path().join("greedy"), "1");
    assert!(rows.len() >= 3, "{} images", rows.len());
    for r in &rows {
        let cap = &r["caption"];
        assert_eq!(cap["source"], "git tiny (greedy)", "{r}");
        let text = cap["text"].as_str().expect("a caption for every image");
        assert!(
            !text.is_empty() && text.split_whitespace().count() <= 12,
            "{text}"
        );
    }
    let again = build(&tmp.path().join("greedy-again"), "1");
    let caps = |rows: &[serde_json::Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["caption"]["text"].to_string())
            .collect()
    };
    assert_eq!(caps(&rows), caps(&again), "captions are deterministic");
    let beams = build(&tmp.path().join("beam"), "3");
    assert!(
        beams
            .iter()
            .all(|r| r["caption"]["source"] == "git tiny (beam 3)")
    );
    eprintln!(
        "e.g. {} / {}",
        rows[0]["caption"]["text"], beams[0]["caption"]["text"]
    );
}
