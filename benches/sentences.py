#!/usr/bin/env python3
"""Peer side of the sentence benchmark: NLTK Punkt (same English parameters as
realsyn) + the same rules (emoji / URL regexes, 3..81 words) + the corpus word
counts + entropy (paper Eq. 1), one core, on the same text. Prints one JSON line.

    python benches/sentences.py TEXT_FILE [REPEAT]
"""
import json
import math
import os
import re
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "peer"))
from punkt_fixture import tokenizer  # noqa: E402  (the NLTK tokenizer with realsyn's parameters)

EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B05-\u2B07\u2B1B\u2B1C\u2B50\u2B55"
                   "\u231A\u231B\u23E9-\u23FA\u3030\u303D\u3297\u3299\uFE0F\u20E3]")
URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.[a-z0-9-]+\.\S+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*"
                 r"\.(?:com|org|net|edu|gov|io|co|uk|de|info|biz|ru|cn|fr|jp)\b(?:/\S*)?", re.I)
WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")

text = open(sys.argv[1], encoding="utf-8").read()
repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 1
paragraphs = [p for p in text.split("\n\n") if p.strip()] * repeat
tok = tokenizer()
start = time.perf_counter()
kept, counts = [], Counter()
n_sent = 0
for p in paragraphs:
    for s in tok.tokenize(p):
        n_sent += 1
        words = [w.lower() for w in WORD.findall(s)]
        if EMOJI.search(s) or URL.search(s) or not (3 <= len(words) <= 81):
            continue
        kept.append(words)
        counts.update(words)
total = sum(counts.values())
final = sum(1 for ws in kept if -sum(counts[w] / total * math.log(counts[w] / total) for w in ws) >= 0.3)
seconds = time.perf_counter() - start
print(json.dumps({"impl": "nltk", "sentences": n_sent, "kept": len(kept), "entropy_kept": final,
                  "seconds": seconds, "sentences_per_s": n_sent / seconds}))
