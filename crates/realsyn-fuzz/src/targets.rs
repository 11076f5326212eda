//! The fuzz targets: each runs one reader through the entry point realsyn itself
//! calls and reduces what it did to an outcome signature (counts and reasons, never
//! paths), which guides the corpus.

use std::path::Path;

use realsyn_builder::extract::ingest::{Format, Input};
use realsyn_builder::store::shard::ShardSpec;

/// What one execution did.
pub struct Outcome {
    /// The input was refused (an error, or everything in it skipped with a reason).
    pub refused: bool,
    pub signature: String,
}

pub struct Target {
    pub name: &'static str,
    /// The extension of the input file (readers pick formats by it).
    pub ext: &'static str,
    /// What the reader is, for reports.
    pub reader: &'static str,
    /// Repository files (relative to the root) added to `corpus/NAME/` as seeds.
    pub fixtures: &'static [&'static str],
    pub dictionary: &'static [&'static [u8]],
    /// Seeds made in code by realsyn's own writer of the format.
    pub made_seeds: fn() -> Vec<Vec<u8>>,
    /// `(path, bytes)`: the input as a file and as bytes.
    pub run: fn(&Path, &[u8]) -> Outcome,
}

fn short(e: &str) -> String {
    // Error chains name the input file; keep the reason only.
    e.rsplit(": ")
        .next()
        .unwrap_or(e)
        .chars()
        .take(60)
        .collect()
}

fn documents(format: Format, path: &Path) -> Outcome {
    let (mut docs, mut items) = (0usize, 0usize);
    let mut skips = std::collections::BTreeSet::new();
    let result = Input::list(format, &[path.to_path_buf()]).and_then(|input| {
        input.documents(
            ShardSpec { index: 0, count: 1 },
            &mut |d| {
                docs += 1;
                items += d.items.len();
            },
            &mut |reason, _| {
                skips.insert(reason.to_string());
            },
        )
    });
    let refused = result.is_err() || docs == 0;
    let signature = match result {
        Err(e) => format!("err {}", short(&format!("{e:#}"))),
        Ok(()) => format!(
            "docs {} items {} skips {skips:?}",
            docs.min(8),
            items.min(16)
        ),
    };
    Outcome { refused, signature }
}

fn html(p: &Path, _: &[u8]) -> Outcome {
    documents(Format::Html, p)
}
fn mmc4(p: &Path, _: &[u8]) -> Outcome {
    documents(Format::Mmc4, p)
}
fn obelics(p: &Path, _: &[u8]) -> Outcome {
    documents(Format::Obelics, p)
}
fn mediawiki(p: &Path, _: &[u8]) -> Outcome {
    documents(Format::Mediawiki, p)
}

fn released(p: &Path, _: &[u8]) -> Outcome {
    let mut skips = std::collections::BTreeSet::new();
    result(
        realsyn_builder::write::parquet::read_released(p, |_, why| {
            skips.insert(why);
        }),
        |rows| format!("rows {} skips {skips:?}", rows.len().min(8)),
    )
}

fn tar(p: &Path, _: &[u8]) -> Outcome {
    let skips = realsyn_data::wds::SkipCounter::new();
    let samples = realsyn_data::wds::read_shard(p, &skips).count();
    let reasons: Vec<String> = skips.snapshot().into_keys().collect();
    Outcome {
        refused: samples == 0,
        signature: format!("samples {} skips {reasons:?}", samples.min(8)),
    }
}

fn image(_: &Path, bytes: &[u8]) -> Outcome {
    // The training loader's path, into the buffer this thread keeps across
    // executions as a decode thread does, must agree with every other reader's,
    // pixel for pixel. Compared in place: a tiny file may declare a photo of tens
    // of megabytes, and copies of it would set the campaign's pace.
    let decoded = realsyn_data::image::decode_checked(bytes);
    let rgb = decoded.as_ref().ok().map(|img| match img.as_rgb8() {
        Some(rgb) => std::borrow::Cow::Borrowed(rgb),
        None => std::borrow::Cow::Owned(img.to_rgb8()),
    });
    let into = realsyn_data::image::with_decoded_rgb8(bytes, |raw, w, h| {
        rgb.as_ref()
            .is_some_and(|want| (w, h) == want.dimensions() && raw == want.as_raw().as_slice())
    });
    match (decoded, into) {
        (Ok(img), Ok(same)) => {
            assert!(same, "decode_rgb8_into and decode_checked disagree");
            Outcome {
                refused: false,
                signature: format!("ok {:?}", img.color()),
            }
        }
        (Err(why), Err(why_into)) => {
            assert_eq!(why, why_into, "decode_rgb8_into refuses for another reason");
            Outcome {
                refused: true,
                signature: format!("err {why}"),
            }
        }
        (a, b) => panic!(
            "decode_checked {:?}, decode_rgb8_into {:?}",
            a.map(|i| i.color()),
            b.map(|_| "decoded")
        ),
    }
}

fn result<T>(r: anyhow::Result<T>, ok: impl Fn(&T) -> String) -> Outcome {
    match r {
        Ok(v) => Outcome {
            refused: false,
            signature: ok(&v),
        },
        Err(e) => Outcome {
            refused: true,
            signature: format!("err {}", short(&format!("{e:#}"))),
        },
    }
}

fn safetensors(p: &Path, _: &[u8]) -> Outcome {
    result(
        realsyn_model::common::files::read_safetensors(p),
        |(sd, _)| format!("ok {}", sd.len().min(8)),
    )
}

fn pickle(p: &Path, _: &[u8]) -> Outcome {
    result(realsyn_model::common::files::read_torch_pickle(p), |sd| {
        format!("ok {}", sd.len().min(8))
    })
}

fn recipe(p: &Path, _: &[u8]) -> Outcome {
    result(realsyn_train::Recipe::load(p, &[]), |_| "ok".into())
}

/// A GGUF through what `--llm embedded` does with one: the header, the tokenizer and
/// its chat template, then the model (config, tensors dequantised, weights loaded).
fn gguf(p: &Path, _: &[u8]) -> Outcome {
    use realsyn_model::common::gguf::Gguf;
    use realsyn_model::llama::Llama;
    use realsyn_model::llama::tokenizer::{ChatMessage, LlamaTokenizer};
    let g = match Gguf::open(p) {
        Ok(g) => g,
        Err(e) => {
            return Outcome {
                refused: true,
                signature: format!("err {}", short(&format!("{e:#}"))),
            };
        }
    };
    let step = |r: anyhow::Result<String>| match r {
        Ok(s) => s,
        Err(e) => format!("err {}", short(&format!("{e:#}"))),
    };
    let tokenizer = step(LlamaTokenizer::from_gguf(&g).and_then(|t| {
        let ids = t.encode("A red bus in Rome, 2024.")?;
        let chat = t.apply_chat_template(&[ChatMessage::user("Describe the image.")]);
        Ok(format!(
            "ids {} template {}",
            ids.len().min(8),
            chat.map_or_else(
                |e| short(&format!("{e:#}")),
                |c| (c.len().min(8)).to_string()
            )
        ))
    }));
    let model = step(
        Llama::<realsyn_model::backend::Cpu>::from_gguf(&g, &Default::default())
            .map(|(_, cfg)| format!("layers {}", cfg.num_hidden_layers.min(4))),
    );
    Outcome {
        refused: model.starts_with("err"),
        signature: format!("tensors {} | {tokenizer} | {model}", g.tensors.len().min(8)),
    }
}

/// Two GGUFs from `gguf::encode`: a tokenizer with a chat template only, and a whole
/// one-layer llama (F32, F16 and Q8_0 tensors) that loads.
fn gguf_seeds() -> Vec<Vec<u8>> {
    use realsyn_model::common::gguf::{TensorType, Value, encode};
    let s = |x: &str| Value::Str(x.into());
    let tokens: Vec<Value> = [
        "<|im_start|>",
        "<|im_end|>",
        "a",
        "b",
        "\u{120}",
        "ab",
        "c",
        "d",
    ]
    .iter()
    .map(|t| s(t))
    .collect();
    let tokenizer = vec![
        ("general.architecture", s("llama")),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("smollm")),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.merges", Value::Array(vec![s("a b")])),
        (
            "tokenizer.ggml.token_type",
            Value::Array([3u64, 3, 1, 1, 1, 1, 1, 1].map(Value::U64).to_vec()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U64(0)),
        ("tokenizer.ggml.eos_token_id", Value::U64(1)),
        (
            "tokenizer.chat_template",
            s(
                "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
            ),
        ),
    ];
    let mut model = tokenizer.clone();
    model.extend([
        ("llama.embedding_length", Value::U64(8)),
        ("llama.attention.head_count", Value::U64(2)),
        ("llama.attention.head_count_kv", Value::U64(1)),
        ("llama.feed_forward_length", Value::U64(16)),
        ("llama.block_count", Value::U64(1)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F64(1e-5)),
        ("llama.context_length", Value::U64(64)),
    ]);
    let f32s = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| ((i % 7) as f32 * 0.1 - 0.3).to_le_bytes())
            .collect()
    };
    let f16s = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| [(i % 251) as u8, 0x3c]).collect() };
    // Q8_0: per 32 values an f16 scale (0.25) and 32 signed bytes.
    let q8 = |n: usize| -> Vec<u8> {
        (0..n / 32)
            .flat_map(|_| [0x00u8, 0x34].into_iter().chain((0..32).map(|i| i as u8)))
            .collect()
    };
    let (embd, norm, q, kv, ffn) = (f32s(64), f32s(8), q8(64), f32s(32), f32s(128));
    let up = f16s(128);
    let tensors: Vec<(&str, TensorType, &[usize], &[u8])> = vec![
        ("token_embd.weight", TensorType::F32, &[8, 8], &embd),
        ("output_norm.weight", TensorType::F32, &[8], &norm),
        ("blk.0.attn_norm.weight", TensorType::F32, &[8], &norm),
        ("blk.0.ffn_norm.weight", TensorType::F32, &[8], &norm),
        ("blk.0.attn_q.weight", TensorType::Q8_0, &[8, 8], &q),
        ("blk.0.attn_k.weight", TensorType::F32, &[8, 4], &kv),
        ("blk.0.attn_v.weight", TensorType::F32, &[8, 4], &kv),
        ("blk.0.attn_output.weight", TensorType::F32, &[8, 8], &embd),
        ("blk.0.ffn_gate.weight", TensorType::F32, &[8, 16], &ffn),
        ("blk.0.ffn_up.weight", TensorType::F16, &[8, 16], &up),
        ("blk.0.ffn_down.weight", TensorType::F32, &[16, 8], &ffn),
    ];
    vec![encode(&tokenizer, &[]), encode(&model, &tensors)]
}

fn none() -> Vec<Vec<u8>> {
    Vec::new()
}

/// Two released-format parquets (snappy-compressed by realsyn's writer), one with a
/// row lacking its optional texts.
fn released_seeds() -> Vec<Vec<u8>> {
    use realsyn_builder::write::parquet::{ReleasedRow, write_released};
    let dir = tempfile::tempdir().expect("temp dir");
    let row = |url: &str, t2: Option<&str>| ReleasedRow {
        raw_image_url: url.into(),
        text1: "A red bus drives through Rome.".into(),
        text2: t2.map(str::to_string),
        text3: t2.map(|t| format!("{t} again")),
        syn_text: Some("A red double-decker bus on a street in Rome.".into()),
    };
    let sets = [
        vec![row("http://127.0.0.1:1/a.jpg", Some("The bus is red."))],
        vec![
            row("http://127.0.0.1:1/b.jpg", None),
            row("", Some("No URL here.")),
        ],
    ];
    sets.iter()
        .enumerate()
        .map(|(i, rows)| {
            let p = dir.path().join(format!("{i}.parquet"));
            write_released(&p, rows).expect("writing a seed");
            std::fs::read(&p).expect("reading a seed")
        })
        .collect()
}

const BINARY: &[&[u8]] = &[
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    b"\x01",
];

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "html",
            ext: "html",
            reader: "local HTML pages (ingest::html via Input)",
            fixtures: &[],
            dictionary: &[
                b"<div>",
                b"</div>",
                b"<img src=\"a.png\" alt=\"an image\">",
                b"<img src=\"/dev/zero\">",
                b"<img src=\"../../etc/passwd\">",
                b"<p>",
                b"</p>",
                b"<meta charset=\"iso-8859-1\">",
                b"<table><tr><td>",
                b"&amp;",
                b"&#x0;",
                b"<script>",
                b"<!--",
                b"\xff\xfe",
                b"\xc3\x28",
                b". ",
            ],
            made_seeds: none,
            run: html,
        },
        Target {
            name: "mmc4",
            ext: "jsonl",
            reader: "MMC4 JSONL (ingest::mmc4 via Input)",
            fixtures: &[],
            dictionary: &[
                b"{",
                b"}",
                b"[",
                b"]",
                b"\"text_list\": ",
                b"\"image_info\": ",
                b"\"matched_text_index\": 18446744073709551615",
                b"\"image_name\": \"/dev/zero\"",
                b"\"raw_url\": \"http://127.0.0.1:1/x.jpg\"",
                b"null",
                b"\\u0000",
                b"\xef\xbb\xbf",
                b"\n",
            ],
            made_seeds: none,
            run: mmc4,
        },
        Target {
            name: "obelics",
            ext: "parquet",
            reader: "OBELICS parquet (ingest::obelics via Input)",
            fixtures: &[
                "tests/fixtures/obelics/snappy.parquet",
                "tests/fixtures/obelics/zstd.parquet",
                "tests/fixtures/obelics/hostile/thrift-skip-past-end.parquet",
                "tests/fixtures/obelics/hostile/thrift-bool-list.parquet",
            ],
            dictionary: BINARY,
            made_seeds: none,
            run: obelics,
        },
        Target {
            name: "released",
            ext: "parquet",
            reader: "released RealSyn parquet (dataset from-released)",
            fixtures: &[],
            dictionary: BINARY,
            made_seeds: released_seeds,
            run: released,
        },
        Target {
            name: "mediawiki",
            ext: "xml",
            reader: "MediaWiki XML dumps (ingest::mediawiki via Input)",
            fixtures: &[],
            dictionary: &[
                b"<page>",
                b"</page>",
                b"<text xml:space=\"preserve\">",
                b"</text>",
                b"<title>",
                b"{{",
                b"}}",
                b"[[",
                b"]]",
                b"&lt;",
                b"<ref>",
                b"'''",
                b"\n== H ==\n",
            ],
            made_seeds: none,
            run: mediawiki,
        },
        Target {
            name: "tar",
            ext: "tar",
            reader: "WebDataset tar shards (wds::read_shard, the training loader's)",
            fixtures: &[],
            dictionary: BINARY,
            made_seeds: none,
            run: tar,
        },
        Target {
            name: "image",
            ext: "img",
            reader: "image decoding (image::decode_checked, every reader's; with_decoded_rgb8, the loader's, must agree)",
            fixtures: &[],
            dictionary: BINARY,
            made_seeds: none,
            run: image,
        },
        Target {
            name: "safetensors",
            ext: "safetensors",
            reader: "safetensors weights (model common::files)",
            fixtures: &[],
            dictionary: BINARY,
            made_seeds: none,
            run: safetensors,
        },
        Target {
            name: "pickle",
            ext: "pt",
            reader: "torch pickles (model common::files via burn-store)",
            fixtures: &[],
            dictionary: BINARY,
            made_seeds: none,
            run: pickle,
        },
        Target {
            name: "gguf",
            ext: "gguf",
            reader: "GGUF LLM weights, tokenizer and chat template (the embedded LLM's)",
            fixtures: &[],
            dictionary: &[
                b"\x00\x00\x00\x00",
                b"\xff\xff\xff\xff",
                b"\xff\xff\xff\xff\xff\xff\xff\x7f",
                b"\x09\x00\x00\x00",
                b"{% for i in range(100000) %}",
                b"{% endfor %}",
                b"{{ messages }}",
                b"general.alignment",
            ],
            made_seeds: gguf_seeds,
            run: gguf,
        },
        Target {
            name: "recipe",
            ext: "toml",
            reader: "training recipes (Recipe::load)",
            fixtures: &[
                "recipes/realsyn15m-vit-b-32.toml",
                "recipes/gimp-tiny-train.toml",
            ],
            dictionary: &[
                b"[train]\n",
                b"[data]\n",
                b"batch_size = ",
                b"-1",
                b"1e309",
                b"nan",
                b"\"",
                b"[[",
                b"= {",
                b"18446744073709551616",
                b"\n",
            ],
            made_seeds: none,
            run: recipe,
        },
    ]
}
