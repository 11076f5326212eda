#!/usr/bin/env python3
"""GIT captioner parity fixtures: transformers 5.23 `GitForCausalLM` (scripts/peer-requirements.txt).

    scripts/peer-env.sh && .peer-venv/bin/pip install scikit-image
    .peer-venv/bin/python tests/peer/git_fixture.py [OUT_DIR]   # default tests/fixtures/git

Writes, for crates/realsyn-model/tests/git_parity.rs:

- `pixels.safetensors`: four scikit-image photos through `CLIPImageProcessor` (GIT's
  processor: shortest side 224 bicubic, centre crop, OpenAI mean/std), [4, 3, 224, 224].
- `base.json` + `base.safetensors`: `GitForCausalLM(GitConfig())`, the shapes of
  microsoft/git-base (176.6M parameters). Its weights are NOT committed (700 MB): every
  tensor is `generated_weights.generated(key, shape)`, which the Rust test recomputes.
  Outputs: the logits of a 6-token prompt at every text position (the first 4,096
  vocabulary columns), greedy and beam-3 generations of 20 new tokens, with scores.
- `tiny/`: a reduced GIT saved with `save_pretrained` (config.json, model.safetensors)
  beside a BERT WordPiece tokenizer trained here (`tokenizer.json`, `vocab.txt`), the
  snapshot layout users download; `tiny.json`: its greedy/beam-3 ids and the captions
  `batch_decode(..., skip_special_tokens=True)` gives. The `[SEP]` logit is raised so
  captions end at different lengths (both end paths of beam search are exercised).
"""
import json
import os
import sys

import numpy as np
import skimage.data
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import BertWordPieceTokenizer
from transformers import BertTokenizerFast, CLIPImageProcessor, GitConfig, GitForCausalLM

from generated_weights import generated

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../fixtures/git")
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]
PROMPT = [101, 1037, 4937, 2006, 1037, 2795]  # [CLS] a cat on a table (bert-base-uncased ids)
NEW_TOKENS = 20
LOGIT_COLUMNS = 4096
CORPUS = [
    "an astronaut in a white suit holding a helmet in front of a flag",
    "a cup of coffee on a saucer with a spoon",
    "a tabby cat lying on a wooden floor",
    "a rocket on the launch pad under a blue sky",
    "two cats sleeping on a pink blanket next to remotes.",
    "The GIMP toolbox holds the painting and selection tools, brushes and layers.",
    "Retrieval pairs every image with the three most relevant sentences of the corpus.",
    "A man riding a wave on top of a surfboard; a dog catching a frisbee in a park!",
]


def generations(model, pixels, **kw):
    out = model.generate(pixel_values=pixels, max_new_tokens=NEW_TOKENS, do_sample=False,
                         return_dict_in_generate=True, output_scores=True, output_logits=True, **kw)
    seqs = out.sequences[:, 1:].tolist()  # without the [CLS] prompt
    rows = []
    for i, s in enumerate(seqs):
        if kw.get("num_beams", 1) > 1:
            n = int((out.beam_indices[i] >= 0).sum())  # this hypothesis' own length
            s = s[:n]
        elif model.config.eos_token_id in s:
            s = s[: s.index(model.config.eos_token_id) + 1]
        ended = bool(s) and s[-1] == model.config.eos_token_id
        row = {"ids": s[:-1] if ended else s, "finish": "stop" if ended else "length"}
        if kw.get("num_beams", 1) > 1:
            row["score"] = float(out.sequences_scores[i])
        rows.append(row)
    return rows, out.sequences


def main():
    torch.manual_seed(0)
    os.makedirs(f"{OUT}/tiny", exist_ok=True)
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    images = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in PHOTOS]
    pixels = processor(images=images, return_tensors="pt").pixel_values
    save_file({"pixel_values": pixels.contiguous()}, f"{OUT}/pixels.safetensors")

    # git-base shapes, generated weights.
    config = GitConfig()
    model = GitForCausalLM(config).eval()
    sd = {k: generated(k, tuple(v.shape)) for k, v in model.state_dict().items()}
    model.load_state_dict(sd, strict=True)
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        ids = torch.tensor([PROMPT] * len(PHOTOS))
        logits = model(input_ids=ids, pixel_values=pixels).logits[:, -len(PROMPT):, :]
        greedy, _ = generations(model, pixels)
        beam, _ = generations(model, pixels, num_beams=3)
    save_file({"logits": logits[:, :, :LOGIT_COLUMNS].contiguous(),
               "row_max": logits.abs().amax(dim=-1).contiguous()}, f"{OUT}/base.safetensors")
    json.dump({"parameters": params, "prompt": PROMPT, "new_tokens": NEW_TOKENS,
               "state_dict": {k: list(v.shape) for k, v in sorted(sd.items())}, "greedy": greedy, "beam3": beam,
               "transformers": __import__("transformers").__version__},
              open(f"{OUT}/base.json", "w"), indent=1)
    print(f"git-base shapes: {params / 1e6:.2f}M parameters; greedy {[len(g['ids']) for g in greedy]}")

    # A tiny snapshot with its own WordPiece tokenizer, as `save_pretrained` lays it out.
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(CORPUS * 4, vocab_size=200, min_frequency=1)
    wp.save_model(f"{OUT}/tiny")  # vocab.txt
    tokenizer = BertTokenizerFast(tokenizer_object=wp._tokenizer, cls_token="[CLS]", sep_token="[SEP]",
                                  pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")
    tokenizer.save_pretrained(f"{OUT}/tiny")
    vocab = tokenizer.vocab_size
    tiny = GitConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=2, image_size=224, patch_size=32),
    )
    torch.manual_seed(1)
    model = GitForCausalLM(tiny).eval()
    with torch.no_grad():
        model.output.bias[tiny.eos_token_id] += 0.12
    model.save_pretrained(f"{OUT}/tiny", safe_serialization=True)
    with torch.no_grad():
        greedy, seqs = generations(model, pixels)
        beam, beam_seqs = generations(model, pixels, num_beams=3)
        tiny_logits = model(input_ids=torch.tensor([[tiny.bos_token_id]] * 4), pixel_values=pixels).logits[:, -1]
    decode = lambda s: tokenizer.batch_decode(s, skip_special_tokens=True)
    json.dump({"greedy": greedy, "beam3": beam,
               "greedy_text": decode(seqs), "beam3_text": decode(beam_seqs),
               "first_logits": tiny_logits.tolist(),
               "encode": {t: tokenizer(t).input_ids for t in CORPUS[:3]}},
              open(f"{OUT}/tiny.json", "w"), indent=1)
    print("tiny greedy lengths", [len(g["ids"]) for g in greedy], [g["finish"] for g in greedy])
    print("tiny beam lengths", [len(g["ids"]) for g in beam], [g["finish"] for g in beam])
    print(decode(seqs), decode(beam_seqs))


if __name__ == "__main__":
    main()
