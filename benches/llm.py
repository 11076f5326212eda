"""The peer of `realsyn bench llm`: transformers generating greedily from the same
GGUF (SmolLM2-135M-Instruct Q4_1, dequantised to f32 by PyPI gguf) on the same prompts
(tests/fixtures/llama/prompts.json), one prompt at a time, with the same thread count.
Prints one JSON line: prompts, prompt and generated tokens, seconds, tokens/s.

    benches/llm.py GGUF PROMPTS.json N NEW_TOKENS THREADS
"""

import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM

gguf, prompts, n, new, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
model = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32).eval()
rows = json.load(open(prompts))["prompts"][:n]
ids = [torch.tensor([r["prompt_ids"]]) for r in rows]
with torch.no_grad():  # warm-up
    model.generate(ids[0], attention_mask=torch.ones_like(ids[0]), do_sample=False, max_new_tokens=4, pad_token_id=2)
    start = time.perf_counter()
    generated = 0
    for x in ids:
        out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=new,
                             min_new_tokens=new, pad_token_id=2)
        generated += out.shape[1] - x.shape[1]
    secs = time.perf_counter() - start
print(json.dumps({"impl": f"transformers {__import__('transformers').__version__} (torch {torch.__version__})",
                  "prompts": len(ids), "prompt_tokens": sum(x.shape[1] for x in ids), "new_tokens": generated,
                  "seconds": secs, "tokens_per_s": generated / secs}))
