//! `realsyn run recipes/runs/gimp-tiny.toml` end to end (GIMP pages + scikit-image photo
//! pages -> synthetic texts by the embedded SmolLM2 -> balanced dataset -> tiny CLIP ->
//! Fashion-MNIST zero-shot and linear probe -> report), once straight through and once
//! killed (SIGKILL to the whole process group) during clustering, during the LLM merge
//! and during training, then rerun: the same dataset bytes, the same training losses
//! and the same results.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{GIMP, glob, tree};

fn root() -> PathBuf {
    std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap()
}

/// The shipped recipe with its run folder moved to `dir`.
fn recipe(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("recipes/runs/gimp-tiny.toml")).unwrap();
    assert!(text.contains("runs/gimp-tiny"));
    let p = dir.with_extension("toml");
    std::fs::write(&p, text.replace("runs/gimp-tiny", dir.to_str().unwrap())).unwrap();
    p
}

fn start(recipe: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(["run", recipe.to_str().unwrap()])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

fn finish(recipe: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(["run", recipe.to_str().unwrap()])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "realsyn run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGKILL the run and every step it started, once `ready` holds.
fn kill_when(child: &mut std::process::Child, what: &str, ready: impl Fn() -> bool) {
    let t = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {what}"
        );
        assert!(t.elapsed() < Duration::from_secs(600), "waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pgid = child.id() as i32;
    assert!(pgid > 1);
    // SAFETY: signals the process group the child leads (process_group(0)).
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGKILL) }, 0);
    child.wait().unwrap();
}

/// The `.json` of every sample in a variant's tars.
fn dataset_samples(variant: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in glob(variant, ".tar") {
        let mut tar = tar::Archive::new(std::fs::File::open(&p).unwrap());
        for f in tar.entries().unwrap() {
            let mut f = f.unwrap();
            if f.path().unwrap().extension().is_some_and(|e| e == "json") {
                out.push(serde_json::from_reader(&mut f).unwrap());
            }
        }
    }
    out
}

fn results(dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out: Vec<(String, serde_json::Value)> = std::fs::read_dir(dir.join("eval"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("done.json"))
        .map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into(),
                v["metrics"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn recipe_runs_documents_to_report_and_resumes_after_sigkill() {
    assert!(Path::new(GIMP).exists(), "run scripts/setup-system.sh");
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let ra = recipe(&a);
    finish(&ra);
    let report = std::fs::read_to_string(a.join("report.md")).unwrap();
    for want in [
        "LLM merge (synthetic text)",
        "semantic balance: cosine band",
        "dataset writer: balanced-16",
        "| balanced-16 |",
        "| fashion-mnist | zeroshot_classification | acc1 |",
        "| fashion-mnist | linear_probe | acc1 |",
    ] {
        assert!(report.contains(want), "report.md lacks {want:?}:\n{report}");
    }
    // The photo pages were read, and most samples carry a synthetic text.
    let samples = dataset_samples(&a.join("store/dataset/balanced-16"));
    assert!(samples.len() >= 60, "{} samples", samples.len());
    let with_syn = samples.iter().filter(|j| j["syn_text"].is_string()).count();
    assert!(
        with_syn * 10 >= samples.len() * 8,
        "{with_syn} of {} have syn_text",
        samples.len()
    );
    assert!(
        samples
            .iter()
            .any(|j| j["url"].as_str().unwrap().contains("photo-pages/images/")),
        "no image from the photo pages"
    );
    let ra_results = results(&a);
    assert_eq!(ra_results.len(), 2);
    // A rerun finds everything done.
    finish(&ra);
    assert_eq!(results(&a), ra_results);

    // The scaling sweep on three tiny sizes of the same dataset: three runs, the
    // fit and its plot; a rerun redoes nothing and fits the same.
    let sweep = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_realsyn"))
            .args(["scaling", "sweep", "--recipe", ra.to_str().unwrap()])
            .args(["--sizes", "30,60,90", "--samples-per-shard", "32"])
            .args(["--metric", "fashion-mnist:linear_probe:acc1"])
            .args(extra)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    sweep(&[]);
    for n in [30, 60, 90] {
        let run = a.join(format!("sweep/{n}-samples"));
        let sizes: std::collections::BTreeMap<String, u64> =
            serde_json::from_slice(&std::fs::read(run.join("data/sizes.json")).unwrap()).unwrap();
        assert_eq!(sizes.values().sum::<u64>(), n);
        assert!(run.join("eval/fashion-mnist_linear_probe.json").is_file());
    }
    let fit = std::fs::read(a.join("sweep/fit/scaling.json")).unwrap();
    let fitted: serde_json::Value = serde_json::from_slice(&fit).unwrap();
    assert!(
        fitted
            .to_string()
            .contains("fashion-mnist:linear_probe:acc1"),
        "{fitted}"
    );
    assert!(a.join("sweep/fit/scaling.png").is_file());
    let again = sweep(&[]);
    assert!(
        !again.contains("realsyn train"),
        "a rerun trained again:\n{again}"
    );
    assert_eq!(
        std::fs::read(a.join("sweep/fit/scaling.json")).unwrap(),
        fit
    );

    let b = tmp.path().join("b");
    let rb = recipe(&b);
    let mut child = start(&rb);
    kill_when(&mut child, "retrieval", || {
        b.join("store/cluster-text").exists()
    });
    assert!(!b.join("store/funnel.json").exists());
    // Killed mid-merge: the journal keeps the finished synthetic texts.
    let mut child = start(&rb);
    let journal = b.join("store/generate/work/part-00000-of-00002.merge.jsonl");
    kill_when(&mut child, "the LLM merge", || {
        std::fs::read_to_string(&journal).is_ok_and(|j| !j.is_empty())
    });
    assert!(!b.join("store/funnel.json").exists());
    let mut child = start(&rb);
    kill_when(&mut child, "training step 10", || {
        std::fs::read_to_string(b.join("train/metrics.jsonl")).is_ok_and(|m| m.lines().count() >= 2)
            && b.join("train/checkpoints/latest").exists()
    });
    assert!(!b.join("train/summary.json").exists());
    finish(&rb);

    assert!(
        tree(&a.join("store/dataset")) == tree(&b.join("store/dataset")),
        "the dataset differs after the kills"
    );
    let losses = |d: &Path| realsyn_train::metrics::read_losses(&d.join("train")).unwrap();
    assert_eq!(
        losses(&a),
        losses(&b),
        "training losses differ after resume"
    );
    assert_eq!(results(&b), ra_results);
}

/// Every shipped run recipe parses, names a variant and a training recipe that
/// loads, and plans the paper's steps; a recipe with an unknown field is refused.
#[test]
fn shipped_run_recipes_check_and_plan() {
    let mut recipes: Vec<PathBuf> = std::fs::read_dir(root().join("recipes/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    recipes.sort();
    assert_eq!(
        recipes.len(),
        10,
        "RealSyn15M/30M/100M x ViT-B/32, B/16, L/14, and gimp-tiny"
    );
    // A fresh run folder each: a finished run in the checkout would plan nothing.
    let tmp = tempfile::tempdir().unwrap();
    for (i, r) in recipes.iter().enumerate() {
        let out = Command::new(env!("CARGO_BIN_EXE_realsyn"))
            .args(["run", "--dry-run"])
            .arg(r)
            .arg("--dir")
            .arg(tmp.path().join(i.to_string()))
            .current_dir(root())
            .output()
            .unwrap();
        let plan = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            r.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        for step in [
            "realsyn build all --store",
            "realsyn train --recipe",
            "realsyn eval --model",
        ] {
            assert!(
                plan.contains(step),
                "{}: no {step:?} in\n{plan}",
                r.display()
            );
        }
        if r.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("realsyn")
        {
            assert!(plan.contains("--balance-caps 20,35,180"), "{plan}");
        } else {
            // gimp-tiny prepares its evaluation data under {dir}: --dir moves it.
            let data = format!(
                "{}/data/fashion-mnist",
                tmp.path().join(i.to_string()).display()
            );
            assert!(
                plan.contains(&format!("--out {data}")) && plan.contains(&format!("wds:{data}")),
                "{plan}"
            );
            assert!(
                !plan.contains("runs/gimp-tiny") && !plan.contains("{dir}"),
                "{plan}"
            );
        }
        assert!(
            !tmp.path().join(i.to_string()).exists(),
            "a dry run wrote files"
        );
    }
    let bad = tmp.path().join("bad.toml");
    let text = std::fs::read_to_string(root().join("recipes/runs/gimp-tiny.toml")).unwrap();
    std::fs::write(&bad, text.replace("[run]", "[run]\nepochs = 3")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(["run", "--dry-run"])
        .arg(&bad)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a run recipe") && err.contains("epochs"),
        "{err}"
    );
}
