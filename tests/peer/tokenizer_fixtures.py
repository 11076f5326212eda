#!/usr/bin/env python3
"""Write the tokenizer parity fixture: real sentences + awkward cases and the ids
open_clip's tokenizer gives them.

    pip install open_clip_torch gensim
    python tests/peer/tokenizer_fixtures.py tests/fixtures/tokenizer/open_clip_ids.jsonl.gz

Sentences come from the Wikipedia excerpt shipped in the gensim wheel (raw wikitext,
so markup, entities and long lines are included on purpose).
"""
import bz2
import gzip
import html
import json
import os
import random
import re
import sys
import xml.etree.ElementTree as ET

import gensim
import open_clip

AWKWARD = [
    "",
    "   ",
    "A photo of a DOG.",
    "\u201cCurly quotes\u201d and \u2018single ones\u2019 aren\u2019t straight",
    "ligatures: \ufb01sh \ufb02ower o\ufb00ice e\ufb03cient \ufb06",
    "emoji \U0001F600\U0001F436\U0001F1EB\U0001F1F7 family \U0001F468\u200d\U0001F469\u200d\U0001F467 thumbs \U0001F44D\U0001F3FD",
    "HTML &amp; entities &lt;b&gt;bold&lt;/b&gt; &eacute;t&eacute; &#8217; &#x2019; &nbsp;space &ampx &copy2024",
    "double escaped &amp;amp; &amp;lt;tag&amp;gt;",
    "a <b>tag</b> stops ftfy's unescape &amp; but html.unescape still runs",
    "\u4e2d\u6587\u5b57\u7b26 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4 \u0442\u0435\u043a\u0441\u0442",
    "\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33 halfwidth \uff73\uff80\uff70\uff9d",
    "mojibake: s\u00c3\u00b3 voil\u00c3\u00a0 le travail \u00e2\u20ac\u0153quoted\u00e2\u20ac\u009d",
    "tabs\tnewlines\nand\r\nCRLF\u2028line sep\u2029para sep  multiple   spaces",
    "control \x00chars\x07 and \x1b[31mANSI\x1b[0m colour and \ufeffBOM",
    "numbers 1234567 3.14159 1,000,000 \u0662\u0663 \u00bd \u2460",
    "contractions: it's we're they've I'm you'll he'd don't IT'S WE'RE",
    "accents: na\u00efve caf\u00e9 r\u00e9sum\u00e9 \u00c5ngstr\u00f6m Stra\u00dfe \u0130stanbul \u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3",
    "combining: e\u0301 a\u0308 n\u0303 \u0915\u093f \u0e01\u0e34",
    "punctuation!!! ??? ... --- ((nested)) [brackets] {braces} @user #hashtag $100 50% a&b",
    "URL https://example.com/path?q=1&r=2#frag and email someone@example.org",
    "<start_of_text> and <end_of_text> written in the text",
    "zero\u200bwidth\u200cjoiner\u200dchars and soft\u00adhyphen",
    "\U0001d4d5\U0001d4f7\U0001d4ea\U0001d4fb math letters \u2102\u211d",
    " ".join(["long"] * 200),
    "word " * 100 + "end",
    "x" * 500,
    "\u00e9" * 300,
]


def wiki_sentences():
    path = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data",
                        "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    texts = []
    with bz2.open(path, "rt", encoding="utf-8") as f:
        for _, elem in ET.iterparse(f):
            if elem.tag.endswith("}text") and elem.text:
                texts.append(elem.text)
            elem.clear()
    sentences = []
    for text in texts:
        for line in text.split("\n"):
            for s in re.split(r"(?<=[.!?])\s+", line):
                s = s.strip()
                if 3 <= len(s) <= 2000:
                    sentences.append(s)
    return sentences


def main(out_path):
    tok = open_clip.get_tokenizer("ViT-B-32")
    sentences = wiki_sentences()
    random.Random(0).shuffle(sentences)
    texts = AWKWARD + sentences[:12000]
    rows = tok(texts).tolist()
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with gzip.open(out_path, "wt", encoding="utf-8") as f:
        for text, row in zip(texts, rows):
            while row and row[-1] == 0:
                row.pop()
            f.write(json.dumps({"text": text, "ids": row}, ensure_ascii=False) + "\n")
    print(f"wrote {len(texts)} texts ({len(AWKWARD)} awkward, {len(texts) - len(AWKWARD)} Wikipedia) to {out_path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokenizer/open_clip_ids.jsonl.gz")
