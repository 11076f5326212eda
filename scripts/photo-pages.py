#!/usr/bin/env python3
"""Write a small interleaved photo corpus from the PyPI scikit-image wheel: the photos
it ships (skimage/data) inside generated web pages whose paragraphs are the photos'
own descriptions (the docstrings of skimage.data's loaders: who took the photo, what
it shows, its licence). Stdlib only; the wheel is downloaded, not installed.

    python3 scripts/photo-pages.py OUT_DIR

OUT_DIR/{photographs,science,test-patterns}.html and OUT_DIR/images/. The pages are
what the builder's HTML reader expects of a web page (paper 3.1): headings, paragraphs,
<img> with alt text, each image beside the text about it. `recipes/runs/gimp-tiny.toml`
reads them as `{cache}/scikit-image/photo-pages` (scripts/setup-system.sh writes them).
Output is deterministic: rerunning gives the same bytes.
"""
import ast
import glob
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

VERSION = "0.26.0"

# Which page each loader's photo goes on; loaders not named here (the ones whose data
# the wheel does not ship) are left out.
PAGES = {
    "photographs": (
        "Photographs that ship with scikit-image",
        ["astronaut", "chelsea", "coffee", "rocket", "camera", "stereo_motorcycle", "coins",
         "moon", "brick", "grass", "gravel", "clock"],
    ),
    "science": (
        "Microscopy, astronomy and medical images in scikit-image",
        ["cell", "immunohistochemistry", "retina", "hubble_deep_field", "microaneurysms",
         "skin", "shepp_logan_phantom"],
    ),
    "test-patterns": (
        "Test patterns, scans and logos in scikit-image",
        ["text", "page", "horse", "logo", "colorwheel", "checkerboard"],
    ),
}
SECTIONS_DROPPED = {"Parameters", "Returns", "References", "Examples", "Raises", "See Also"}


def wheel(tmp):
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    f"scikit-image=={VERSION}", "-d", tmp], check=True)
    return zipfile.ZipFile(glob.glob(os.path.join(tmp, "scikit_image-*.whl"))[0])


def clean(text):
    """RST to plain text: links keep their words, citations and markup go."""
    text = re.sub(r"`([^`<]*?)\s*<[^>]+>`__?", r"\1", text)  # `words <url>`__
    text = re.sub(r"<https?://[^>]+>`__", "", text)
    text = re.sub(r"\s*\[\d+\]_", "", text)
    text = text.replace("``", "").replace("`", "")
    text = re.sub(r"\s+", " ", text).replace("::", ":")
    return re.sub(r"\s+([.,;:])", r"\1", text).strip()


def paragraphs(doc):
    """The description and Notes paragraphs of a numpydoc docstring (its first line,
    the summary, first). Sections other than Notes, directives (".. versionchanged::")
    and their indented bodies are left out."""
    lines = doc.split("\n")
    out, block, keep, in_directive = [], [], True, False

    def flush():
        if block and keep:
            out.append(clean(" ".join(block)))
        block.clear()

    for i, line in enumerate(lines):
        text = line.strip()
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()) and text:
            flush()
            keep = text not in SECTIONS_DROPPED
            continue
        if re.fullmatch(r"-{3,}", text):
            continue
        if text.startswith(".. "):
            flush()
            in_directive = True
            continue
        if in_directive and (not text or line[:1].isspace()):
            continue
        in_directive = False
        if not text:
            flush()
        else:
            block.append(text)
    flush()
    return [p for p in out if p]


def loaders(z):
    tree = ast.parse(z.read("skimage/data/_fetchers.py").decode("utf-8"))
    found = {}
    for f in tree.body:
        if not isinstance(f, ast.FunctionDef):
            continue
        files = [c.args[0].value for c in ast.walk(f)
                 if isinstance(c, ast.Call) and c.args and isinstance(c.args[0], ast.Constant)
                 and isinstance(c.args[0].value, str) and c.args[0].value.endswith((".png", ".jpg"))]
        shipped = [p for p in files if "skimage/" + p in z.namelist()]
        if shipped and ast.get_docstring(f):
            found[f.name] = (shipped, ast.get_docstring(f))
    return found


def page(title, entries):
    body = [f"<h1>{html.escape(title)}</h1>",
            "<p>These pictures are the sample data of scikit-image, an image processing "
            "library for Python. Each one is shown with the description its authors wrote "
            "for it.</p>"]
    for name, files, doc in entries:
        paras = paragraphs(doc)
        heading, rest = paras[0], paras[1:]
        body.append(f"<h2>{html.escape(heading.rstrip('.'))}</h2>")
        for i, f in enumerate(files):
            alt = heading if len(files) == 1 else f"{heading.rstrip('.')} ({'left' if i == 0 else 'right'} view)"
            body.append(f'<p><img src="images/{os.path.basename(f)}" alt="{html.escape(alt, quote=True)}"></p>')
        body.extend(f"<p>{html.escape(p)}</p>" for p in rest)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title></head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def main(out):
    with tempfile.TemporaryDirectory() as tmp, wheel(tmp) as z:
        found = loaders(z)
        staging = out + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(os.path.join(staging, "images"))
        count = 0
        for slug, (title, names) in PAGES.items():
            entries = [(n, *found[n]) for n in names if n in found]
            for _, files, _ in entries:
                for f in files:
                    with open(os.path.join(staging, "images", os.path.basename(f)), "wb") as dst:
                        dst.write(z.read("skimage/" + f))
                    count += 1
            with open(os.path.join(staging, slug + ".html"), "w", encoding="utf-8") as dst:
                dst.write(page(title, entries))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(staging, out)
    print(f"{len(PAGES)} pages, {count} images in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/photo-pages")
