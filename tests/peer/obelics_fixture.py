#!/usr/bin/env python3
"""OBELICS-layout parquet fixtures, written by pyarrow (the writer OBELICS' own
tooling uses): tests/fixtures/obelics/{snappy,zstd}.parquet.

    pip install pyarrow && python tests/peer/obelics_fixture.py

Schema as the OBELICS release: images list<string>, metadata string (JSON list),
general_metadata string (JSON object), texts list<string>. Texts are real Wikipedia
paragraphs (the Punkt fixture); image URLs are OBELICS-style http URLs. Row 3 is
malformed on purpose (images and texts of different lengths).
"""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
paras = json.load(open(os.path.join(ROOT, "tests/fixtures/punkt/wikipedia.json")))["text"].split("\n\n")[:6]
rows = []
for d in range(3):
    images = [f"http://images.example.org/doc{d}/a.jpg", None, f"http://images.example.org/doc{d}/b.jpg", None]
    texts = [None, paras[2 * d], None, paras[2 * d + 1]]
    meta = [
        {"document_url": f"https://en.wikipedia.org/wiki/Doc{d}", "unformatted_src": images[0], "src": images[0],
         "formatted_filename": "a", "alt_text": f"Illustration {d}", "original_width": 640, "original_height": 480},
        None,
        {"document_url": f"https://en.wikipedia.org/wiki/Doc{d}", "src": images[2], "alt_text": "",
         "original_width": 300, "original_height": 200},
        None,
    ]
    rows.append({
        "images": images, "metadata": json.dumps(meta), "texts": texts,
        "general_metadata": json.dumps({"url": f"https://en.wikipedia.org/wiki/Doc{d}",
                                        "warc_filename": "crawl-data/CC-MAIN-2023-06/x.warc.gz",
                                        "warc_record_offset": 1000 * d, "warc_record_length": 5000}),
    })
rows.append({"images": [None, None], "metadata": "[]", "texts": ["only one text"], "general_metadata": "{}"})
schema = pa.schema([("images", pa.list_(pa.string())), ("metadata", pa.string()),
                    ("general_metadata", pa.string()), ("texts", pa.list_(pa.string()))])
table = pa.Table.from_pylist(rows, schema=schema)
os.makedirs(os.path.join(ROOT, "tests/fixtures/obelics"), exist_ok=True)
for codec in ("snappy", "zstd"):
    pq.write_table(table, os.path.join(ROOT, f"tests/fixtures/obelics/{codec}.parquet"), compression=codec,
                   row_group_size=2)
print(table.num_rows, "rows")
