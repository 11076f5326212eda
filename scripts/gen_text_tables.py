#!/usr/bin/env python3
"""Dump the character tables that CLIP's text cleaning depends on.

open_clip cleans every caption with `ftfy.fix_text` and `html.unescape` before BPE.
Those functions are driven by tables (HTML5 entities, ligatures, width map, control
characters, single-byte codecs, the mojibake detector regex). This script writes them
as JSON so the Rust port (crates/realsyn-model/src/tokenizer/clean.rs) reads the very
same data. Re-run it after upgrading ftfy or Python:

    python scripts/gen_text_tables.py > crates/realsyn-model/data/text_clean_tables.json
"""
import html
import html.entities
import json
import sys

import ftfy
from ftfy import badness, chardata


def verbose_to_plain(pattern: str) -> str:
    """Turn a Python re.VERBOSE pattern into a plain one that Rust's regex accepts.

    Whitespace and comments outside classes are dropped; every non-ASCII or space
    character inside a class is written as an explicit \\x{...} escape, because Rust's
    (?x) mode (unlike Python's) also ignores whitespace inside classes."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
                out.append(c)
            elif ord(c) > 0x7E or c.isspace() or ord(c) < 0x20:
                out.append("\\x{%x}" % ord(c))
            else:
                out.append(c)
        else:
            if c == "[":
                in_class = True
                out.append(c)
            elif c.isspace():
                pass
            elif c == "#":
                while i < len(pattern) and pattern[i] != "\n":
                    i += 1
                continue
            else:
                out.append(c)
        i += 1
    return "".join(out)


def codec_table(encoding: str) -> list:
    table = []
    for b in range(256):
        try:
            table.append(bytes([b]).decode(encoding))
        except UnicodeDecodeError:
            table.append(None)
    return table


def main():
    tables = {
        "generated_by": "scripts/gen_text_tables.py",
        "python": sys.version.split()[0],
        "ftfy": ftfy.__version__,
        # html.unescape
        "html5_entities": html.entities.html5,
        "invalid_charrefs": {str(k): v for k, v in html._invalid_charrefs.items()},
        "invalid_codepoints": sorted(html._invalid_codepoints),
        # ftfy
        "ftfy_html_entities": chardata.HTML_ENTITIES,
        "ligatures": {str(k): v for k, v in chardata.LIGATURES.items()},
        "width_map": {str(k): v for k, v in chardata.WIDTH_MAP.items()},
        "control_chars": sorted(chardata.CONTROL_CHARS.keys()),
        "charmap_encodings": chardata.CHARMAP_ENCODINGS,
        "codecs": {e: codec_table(e) for e in chardata.CHARMAP_ENCODINGS + ["windows-1252"]},
        "badness_re": verbose_to_plain(badness.BADNESS_RE.pattern),
        # Python's str.split() / str.isspace() whitespace set
        "python_whitespace": [c for c in range(sys.maxunicode + 1) if chr(c).isspace()],
    }
    json.dump(tables, sys.stdout, ensure_ascii=True, sort_keys=True)


if __name__ == "__main__":
    main()
