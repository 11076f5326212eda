"""The peer half of benches/git.sh: transformers' GitForCausalLM captioning the same
images from the same snapshot, greedy or beam search, new tokens forced to a fixed
count (min_new_tokens), batch by batch; prints one JSON line.

    python benches/git.py prepare DIR        # git-base-shaped snapshot + photos in DIR
    python benches/git.py run DIR N NEW BEAMS BATCH THREADS
"""
import json
import os
import sys
import time

import numpy as np
import torch


def prepare(out):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "peer"))
    import skimage.data
    from PIL import Image
    from transformers import GitConfig, GitForCausalLM
    from generated_weights import generated

    os.makedirs(f"{out}/images", exist_ok=True)
    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
             "colorwheel", "logo"]
    for i, name in enumerate(names):
        img = getattr(skimage.data, name)()
        Image.fromarray(img).convert("RGB").save(f"{out}/images/{i:02d}-{name}.png")
    if not os.path.exists(f"{out}/git-base-generated/model.safetensors"):
        model = GitForCausalLM(GitConfig())
        model.load_state_dict({k: generated(k, tuple(v.shape)) for k, v in model.state_dict().items()})
        model.save_pretrained(f"{out}/git-base-generated", safe_serialization=True)


def run(out, n, new, beams, batch, threads):
    from PIL import Image
    from transformers import CLIPImageProcessor, GitForCausalLM

    torch.set_num_threads(threads)
    model = GitForCausalLM.from_pretrained(f"{out}/git-base-generated").eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    files = sorted(os.listdir(f"{out}/images"))[:n]

    def caption(chunk):
        images = [Image.open(f"{out}/images/{f}").convert("RGB") for f in chunk]
        pixels = processor(images=images, return_tensors="pt").pixel_values
        seqs = model.generate(pixel_values=pixels, max_new_tokens=new, min_new_tokens=new,
                              num_beams=beams, do_sample=False)
        return (seqs.shape[1] - 1) * len(chunk)

    with torch.no_grad():
        caption(files[:1])
        start = time.perf_counter()
        tokens = sum(caption(files[i:i + batch]) for i in range(0, len(files), batch))
        secs = time.perf_counter() - start
    print(json.dumps({"impl": f"transformers {__import__('transformers').__version__} (batch {batch})",
                      "images": len(files), "beams": beams, "new_tokens": tokens, "seconds": secs,
                      "captions_per_s": len(files) / secs, "tokens_per_s": tokens / secs}))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    else:
        run(sys.argv[2], *map(int, sys.argv[3:8]))
