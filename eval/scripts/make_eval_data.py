#!/usr/bin/env python3
"""Regenerate the evaluation data under eval/ from the sources users trust.

  * eval/classnames/imagenet1k.txt, imagenet_wnids.txt, imagenet_a_wnids.txt,
    imagenet_r_wnids.txt: CLIP's curated ImageNet class names and the wnid lists
    from the CLIP_benchmark wheel (PyPI `clip-benchmark`). SLIP's labels.json uses the
    same curated names.
  * eval/templates/clip_benchmark.json: CLIP_benchmark's English templates, with
    `{c}` as the class placeholder (the option to SLIP's).
  * eval/paper/table{1,2,3,4,9,10,11}.tsv: the paper's own rows, cut from the
    paper text (shared/reference/realsyn-paper.txt).

eval/templates/slip.json is SLIP's templates.json (facebookresearch/SLIP, MIT), with
keys renamed to realsyn's benchmark names; it is not regenerated here.

Usage: /root/venv-peer/bin/python eval/scripts/make_eval_data.py [PAPER_TXT]
"""
import ast
import json
import os
import sys

import clip_benchmark.datasets as cbd

EVAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CB = os.path.dirname(cbd.__file__)


def write_lines(name, lines):
    with open(os.path.join(EVAL, "classnames", name), "w") as f:
        f.write("\n".join(lines) + "\n")


def list_literal(source, var):
    """The first list/set literal assigned to `var` in a Python source text."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == var for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            return sorted(value) if isinstance(value, set) else list(value)
    raise KeyError(var)


def classnames_and_wnids():
    names = json.load(open(os.path.join(CB, "en_classnames.json")))
    write_lines("imagenet1k.txt", names["imagenet1k"])
    builder = open(os.path.join(CB, "builder.py")).read()
    all_wnids = list_literal(builder, "all_imagenet_wordnet_ids")
    assert len(all_wnids) == 1000 and all_wnids == sorted(all_wnids)
    write_lines("imagenet_wnids.txt", all_wnids)
    for var, out in [("imagenet_a_wnids", "imagenet_a_wnids.txt"), ("imagenet_r_wnids", "imagenet_r_wnids.txt")]:
        wnids = list_literal(builder, var)
        assert len(wnids) == 200 and set(wnids) <= set(all_wnids)
        write_lines(out, sorted(wnids))


def templates():
    t = json.load(open(os.path.join(CB, "en_zeroshot_classification_templates.json")))
    with open(os.path.join(EVAL, "templates", "clip_benchmark.json"), "w") as f:
        json.dump(t, f, indent=1, sort_keys=True)
        f.write("\n")


# (table number, first header line) -> the rows that follow until a blank line.
TABLES = {
    1: "Linear probe on 20 downstream datasets. Pre-training ViT-B/32",
    2: "Zero-shot transfer on 20 downstream datasets. Pre-training ViT-B/32",
    3: "Zero-shot image-text retrieval performance",
    4: "Zero-shot robustness comparison. Pre-training CLIP-B/32",
    9: "Linear probe on 20 downstream datasets. Pre-training different scale",
    10: "Zero-shot transfer on 20 downstream datasets. Pre-training different scale",
    11: "Zero-shot robustness comparison. Pre-training different scale",
}


def paper_tables(paper):
    lines = open(paper, encoding="utf-8").read().splitlines()
    for number, caption in TABLES.items():
        end = next(i for i, l in enumerate(lines) if l.startswith(f"Table {number}:") and caption in l)
        rows, i = [], end - 1
        while i >= 0 and not lines[i].strip():
            i -= 1
        while i >= 0 and lines[i].strip() and "\t" in lines[i]:
            rows.append(lines[i])
            i -= 1
        rows.reverse()
        header_idx = next(k for k, r in enumerate(rows) if r.startswith(("Data Scale", "Model")))
        rows = rows[header_idx:]
        out, group = [], ""
        for k, r in enumerate(rows):
            cells = r.split("\t")
            if k == 0 or not any(c.replace(".", "").isdigit() for c in cells):
                if k == 0 and number == 3:
                    continue
                if number == 3 and cells[2:3] == ["R@1"]:
                    header = ["group", "dataset"] + [
                        f"{d}_{kind}_R@{n}"
                        for kind in ("text", "image")
                        for d in ("flickr30k", "mscoco")
                        for n in (1, 5, 10)
                    ]
                    out.append("\t".join(header))
                elif number != 3:
                    out.append("\t".join(["group", "dataset"] + cells[2:]))
                continue
            group = cells[0] or group
            name = cells[1].replace("<i>", "").replace("</i>", "")
            out.append("\t".join([group, name] + cells[2:]))
        with open(os.path.join(EVAL, "paper", f"table{number}.tsv"), "w") as f:
            f.write(f"# {caption} (paper Table {number})\n")
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    paper = sys.argv[1] if len(sys.argv) > 1 else os.path.join(EVAL, "..", "..", "shared", "reference", "realsyn-paper.txt")
    classnames_and_wnids()
    templates()
    paper_tables(paper)
