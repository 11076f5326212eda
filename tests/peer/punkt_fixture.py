#!/usr/bin/env python3
"""Punkt fixture: NLTK's sentence boundaries on real text -> tests/fixtures/punkt/*.json.

    pip install nltk==3.10.4   # (the peer venv has it)
    python tests/peer/punkt_fixture.py GENSIM_WHEEL_OR_BZ2 [GIMP_HELP_DIR]

NLTK's `PunktSentenceTokenizer` is loaded with the same English parameters that
realsyn bundles (crates/realsyn-builder/data/punkt/english.json, NLTK's English
model as shipped by the `punkt` crate), so the test compares the algorithm.
Texts: (1) the Wikipedia excerpt in the gensim wheel
(gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2),
wikitext stripped to prose paragraphs by the small cleaner below; (2) the paragraphs
of Debian's gimp-help-en pages (/usr/share/gimp/2.0/help/en). Each fixture holds the
text and NLTK's spans (character offsets).
"""
import bz2
import glob
import html
import json
import os
import re
import sys
import zipfile
from html.parser import HTMLParser

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WIKI = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def tokenizer():
    d = json.load(open(os.path.join(ROOT, "crates/realsyn-builder/data/punkt/english.json")))
    p = PunktParameters()
    p.abbrev_types = set(d["abbrev_types"])
    p.collocations = {tuple(c) for c in d["collocations"]}
    p.sent_starters = set(d["sentence_starters"])
    for k, v in d["ortho_context"].items():
        p.ortho_context[k] = v
    return PunktSentenceTokenizer(p)


def strip_templates(s):
    out, depth, i = [], 0, 0
    while i < len(s):
        if s.startswith("{{", i) or s.startswith("{|", i):
            depth += 1; i += 2
        elif (s.startswith("}}", i) or s.startswith("|}", i)) and depth:
            depth -= 1; i += 2
        else:
            if not depth:
                out.append(s[i])
            i += 1
    return "".join(out)


def wiki_paragraphs(path, max_chars):
    if path.endswith(".whl"):
        raw = bz2.decompress(zipfile.ZipFile(path).read(WIKI)).decode()
    else:
        raw = bz2.open(path, "rt").read()
    paras, total = [], 0
    for m in re.finditer(r"<text[^>]*>(.*?)</text>", raw, re.S):
        t = html.unescape(m.group(1))
        t = strip_templates(t)
        t = re.sub(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>|<!--.*?-->", "", t, flags=re.S)
        t = re.sub(r"<[^>]+>", "", t)
        t = re.sub(r"\[\[(?:File|Image|Category):[^\]]*(?:\[\[[^\]]*\]\][^\]]*)*\]\]", "", t)
        t = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", t)
        t = re.sub(r"\[https?://\S+ ?([^\]]*)\]", r"\1", t)
        t = t.replace("'''", "").replace("''", "")
        for para in t.split("\n\n"):
            lines = [l for l in para.split("\n") if l.strip() and l.lstrip()[0] not in "=*#:;|!{}"]
            para = "\n".join(lines).strip()
            if len(para) > 200:
                paras.append(para)
                total += len(para)
        if total > max_chars:
            break
    return paras


class Paragraphs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.paras, self.buf, self.depth = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "p":
            self.depth += 1

    def handle_endtag(self, tag):
        if tag == "p" and self.depth:
            self.depth -= 1
            text = "".join(self.buf).strip()
            if text:
                self.paras.append(text)
            self.buf = []

    def handle_data(self, data):
        if self.depth:
            self.buf.append(data)


def gimp_paragraphs(root, max_chars):
    paras, total = [], 0
    for page in sorted(glob.glob(os.path.join(root, "*.html"))):
        p = Paragraphs()
        p.feed(open(page, encoding="utf-8").read())
        for para in p.paras:
            paras.append(para)
            total += len(para)
        if total > max_chars:
            break
    return paras


def write(name, paras, tok):
    text = "\n\n".join(paras)
    spans = [list(s) for s in tok.span_tokenize(text)]
    with open(os.path.join(ROOT, "tests/fixtures/punkt", name), "w") as f:
        json.dump({"source": name, "text": text, "spans": spans}, f, ensure_ascii=False)
    print(name, len(text), "chars", len(spans), "sentences")


def main():
    tok = tokenizer()
    write("wikipedia.json", wiki_paragraphs(sys.argv[1], 200_000), tok)
    gimp = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/gimp/2.0/help/en"
    write("gimp-help.json", gimp_paragraphs(gimp, 150_000), tok)
    # Edge cases, one per line of NLTK's heuristics (abbreviations, initials, numbers,
    # ellipses, quotes and brackets, ?!, curly quotes).
    edge = [
        "This is a test. Mr. Smith went to Washington. He left at 5 p.m. yesterday.",
        "(How does it deal with this parenthesis?)  \"It should be part of the previous sentence.\" Yes.",
        "J. S. Bach wrote it. It was 3 a.m. The U.S. is big. Wait... What? Really!? Yes.",
        "She said \u201cstop.\u201d Then she left. It cost $3.50. On Jan. 5 we met. No. 5 is mine.",
        "Hello, world... (e.g. this) isn't--it's \"quoted\". Section 2.1. Writing. See Fig. 3.",
    ]
    write("edge-cases.json", edge, tok)


if __name__ == "__main__":
    main()
