//! The `realsyn` binary end to end on small real files: PNG/JPEG images written by the
//! `image` crate, a corrupt JPEG, texts with invalid UTF-8, the tiny open_clip fixture.

use std::path::{Path, PathBuf};
use std::process::Command;

use realsyn_io::npy::read_npy;

fn realsyn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(args)
        .output()
        .expect("runs")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_images(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let img = image::RgbImage::from_fn(50, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 128])
    });
    img.save(dir.join("a.png")).unwrap();
    image::DynamicImage::ImageRgb8(img)
        .to_luma8()
        .save(dir.join("c.jpg"))
        .unwrap();
    std::fs::write(dir.join("b.jpg"), b"\xff\xd8\xff\xe0 this is not a jpeg").unwrap();
}

#[test]
fn embed_images_skips_bad_files_by_name_and_keeps_order() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    write_images(&images);
    let out: PathBuf = tmp.path().join("img.npy");
    let o = realsyn(&[
        "embed",
        "--arch",
        &fixture("tiny-gelu.json"),
        "--weights",
        &fixture("tiny-gelu.safetensors"),
        "--images",
        s(&images),
        "--output",
        s(&out),
        "--normalize",
        "--batch-size",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("skipping b.jpg"), "{stderr}");
    let (data, shape) = read_npy::<f32>(&out).unwrap();
    assert_eq!(shape, vec![2, 32]);
    for row in data.chunks(32) {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "normalised row has norm {norm}");
    }
    let names = std::fs::read_to_string(out.with_extension("files.txt")).unwrap();
    assert_eq!(names, "a.png\nc.jpg\n");
    let skips = std::fs::read_to_string(out.with_extension("skips.jsonl")).unwrap();
    let skips: Vec<serde_json::Value> = skips
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(skips.len(), 1, "{skips:?}");
    assert_eq!(skips[0]["what"], "b.jpg");
    assert!(
        skips[0]["reason"].as_str().unwrap().contains("decode"),
        "{skips:?}"
    );

    // Every file bad: an error, not an empty .npy.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("x.jpg"), b"not an image").unwrap();
    let none = tmp.path().join("none.npy");
    let o = realsyn(&[
        "embed",
        "--arch",
        &fixture("tiny-gelu.json"),
        "--weights",
        &fixture("tiny-gelu.safetensors"),
        "--images",
        s(&bad),
        "--output",
        s(&none),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to embed"));
    assert!(!none.exists());
}

#[test]
fn tokenize_and_embed_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = tmp.path().join("t.txt");
    std::fs::write(&texts, "a photo of a cat\nA PHOTO OF A DOG\n").unwrap();
    let ids = tmp.path().join("ids.npy");
    let o = realsyn(&["tokenize", "--input", s(&texts), "--output", s(&ids)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (data, shape) = read_npy::<i32>(&ids).unwrap();
    assert_eq!(shape, vec![2, 77]);
    assert_eq!(&data[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
    assert_eq!(&data[77..84], &[49406, 320, 1125, 539, 320, 1929, 49407]);

    // The quickgelu fixture has a 16-token context and a 500-token vocabulary, too small
    // for CLIP ids: embedding through the CLI must fail with a clear message, not panic.
    let out = tmp.path().join("t.npy");
    let o = realsyn(&[
        "embed",
        "--arch",
        &fixture("tiny-quickgelu.json"),
        "--weights",
        &fixture("tiny-quickgelu.safetensors"),
        "--texts",
        s(&texts),
        "--output",
        s(&out),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("vocab"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn invalid_utf8_is_reported_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = tmp.path().join("t.txt");
    std::fs::write(&texts, b"fine\nbad \xff byte\n").unwrap();
    let o = realsyn(&[
        "tokenize",
        "--input",
        s(&texts),
        "--output",
        s(&tmp.path().join("x.npy")),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("t.txt:2") && err.contains("UTF-8"), "{err}");
}

#[test]
fn convert_to_hf_and_back_preserves_every_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    let back = tmp.path().join("back.safetensors");
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr))
    };
    ok(realsyn(&[
        "convert",
        "--input",
        &fixture("tiny-gelu.safetensors"),
        "--arch",
        &fixture("tiny-gelu.json"),
        "--output",
        s(&hf),
    ]));
    assert!(hf.join("config.json").exists() && hf.join("model.safetensors").exists());
    ok(realsyn(&[
        "convert",
        "--input",
        s(&hf),
        "--output",
        s(&back),
        "--to",
        "open_clip",
    ]));
    let a =
        realsyn_model::clip::weights::read_weights(Path::new(&fixture("tiny-gelu.safetensors")))
            .unwrap();
    let b = realsyn_model::clip::weights::read_weights(&back).unwrap();
    assert_eq!(a.state_dict, b.state_dict);
}

#[test]
fn help_explains_the_commands() {
    let o = realsyn(&["--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for cmd in ["tokenize", "embed", "convert", "init", "bench"] {
        assert!(help.contains(cmd), "{help}");
    }
}

/// No module of any crate imports, through others, a module that imports it
/// (scripts/module-cycles.py walks every crate's `crate::`/`super::` paths).
#[test]
fn no_import_cycles_between_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("python3")
        .arg("scripts/module-cycles.py")
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It saw every crate.
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .matches("0 cycles")
            .count()
            >= 9
    );
}

/// Each bench mode is a subcommand with its own options and prints one JSON line.
#[test]
fn bench_modes_are_subcommands_that_print_one_json_line() {
    let run = |args: &[&str]| -> serde_json::Value {
        let o = realsyn(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        serde_json::from_str(out.lines().last().unwrap()).unwrap()
    };
    let arch = fixture("tiny-gelu.json");
    let v = run(&[
        "bench",
        "encode-image",
        "--arch",
        &arch,
        "--batch-size",
        "2",
        "--warmup",
        "0",
        "--iters",
        "2",
    ]);
    assert_eq!(
        (v["mode"].as_str(), v["batch_size"].as_u64()),
        (Some("encode-image"), Some(2))
    );
    assert_eq!(v["seconds"].as_array().unwrap().len(), 2);
    // --profile-host: the tables, folded stacks and flame graph of the timed runs.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let v = run(&[
        "bench",
        "train-step",
        "--arch",
        &arch,
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--iters",
        "3",
        "--profile-host",
        profile.to_str().unwrap(),
    ]);
    assert!(v["host_profile"]["samples"].as_u64().unwrap() > 0, "{v}");
    let table = std::fs::read_to_string(profile.join("host-profile.txt")).unwrap();
    assert!(
        table.contains("CPU time by thread") && table.contains("(profiled caller)"),
        "{table}"
    );
    // Every sample of the thread that runs the steps lies inside the timed loop.
    let folded = std::fs::read_to_string(profile.join("host-profile.folded")).unwrap();
    assert!(
        folded
            .lines()
            .filter(|l| l.contains("(profiled caller)"))
            .all(|l| l.contains("time_runs")),
        "{folded}"
    );
    let svg = std::fs::read_to_string(profile.join("host-profile.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    // And its wall clock, waits included: inside the loop too, in the trainer's step.
    let wall = std::fs::read_to_string(profile.join("host-profile-wall.folded")).unwrap();
    assert!(
        wall.lines().count() > 0 && wall.lines().all(|l| l.contains("time_runs")),
        "{wall}"
    );
    assert!(wall.contains("distributed_step"), "{wall}");
    assert!(table.contains("The profiled caller's wall time"), "{table}");
    let v = run(&["bench", "semantic-dedup", "--n", "2000", "--dim", "16"]);
    assert_eq!(v["mode"], "semantic-dedup");
    assert!(v["recall"].as_f64().unwrap() > 0.9, "{v}");
    // A mode's own options only: k-means has --k, not --workers.
    let help = String::from_utf8_lossy(&realsyn(&["bench", "kmeans", "--help"]).stdout).to_string();
    assert!(
        help.contains("--k ") && !help.contains("--workers"),
        "{help}"
    );
    let missing = realsyn(&["bench", "kmeans"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--features"));
}

/// `realsyn scaling fit` recovers the paper's Eq. 3 from points on its curves (the
/// 12M-60M range of appendix B.3), reads `realsyn eval` result directories, and draws
/// the fit as SVG and PNG.
#[test]
fn scaling_fit_recovers_eq3_and_draws_it() {
    let tmp = tempfile::tempdir().unwrap();
    let laws = [
        ("linear-probe-avg", -0.21, 4.23, 0.80),
        ("zero-shot-avg", -0.30, 5.68, 0.62),
        ("robustness-avg", -0.60, 3.17, 0.56),
    ];
    let xs = [12.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0];
    let mut tsv = String::new();
    for (m, a, b, c) in laws {
        for x in xs {
            tsv.push_str(&format!("{x}\t{m}\t{}\n", a / f64::ln(x - b) + c));
        }
    }
    let points = tmp.path().join("points.tsv");
    std::fs::write(&points, tsv).unwrap();
    let out = tmp.path().join("fit");
    let o = Command::new(env!("CARGO_BIN_EXE_realsyn"))
        .args(["scaling", "fit", "--points"])
        .arg(&points)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scaling.json")).unwrap()).unwrap();
    for (m, a, b, c) in laws {
        let law = &fit[m]["fit"]["law"];
        for (key, want) in [("a", a), ("b", b), ("c", c)] {
            let got = law[key].as_f64().unwrap();
            assert!((got - want).abs() < 1e-3, "{m} {key}: {got} vs {want}");
        }
    }
    assert!(
        std::fs::read_to_string(out.join("scaling.svg"))
            .unwrap()
            .contains("extrapolation to 100M")
    );
    let png = image::open(out.join("scaling.png")).unwrap();
    assert!(png.width() > 1000);

    // From eval result directories: one CLIP_benchmark JSON per run.
    let mut runs = Vec::new();
    for x in [12.0, 20.0, 30.0, 45.0, 60.0] {
        let dir = tmp.path().join(format!("run{x}"));
        std::fs::create_dir_all(&dir).unwrap();
        let acc = -0.30 / f64::ln(x - 5.68) + 0.62;
        let json = serde_json::json!({"dataset": "cifar10", "model": "m", "pretrained": "p",
            "task": "zeroshot_classification", "metrics": {"acc1": acc}});
        std::fs::write(
            dir.join("cifar10_zeroshot_classification.json"),
            json.to_string(),
        )
        .unwrap();
        runs.push(format!("{x}={}", dir.display()));
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realsyn"));
    cmd.args([
        "scaling",
        "fit",
        "--metric",
        "zero-shot-avg,cifar10:zeroshot_classification:acc1",
        "--output",
    ])
    .arg(tmp.path().join("fit2"));
    for r in &runs {
        cmd.args(["--run", r]);
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("zero-shot-avg: L(x) = -0.300")
            && stdout.contains("cifar10:zeroshot_classification:acc1"),
        "{stdout}"
    );
}
