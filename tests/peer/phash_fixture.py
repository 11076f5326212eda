#!/usr/bin/env python3
"""pHash fixture: imagehash.phash (4.3) of 40 GIMP-manual images larger than 100 px
-> tests/fixtures/phash/gimp.json (relative path -> 16 hex digits).

    pip install imagehash && python tests/peer/phash_fixture.py [/usr/share/gimp/2.0/help/en]
"""
import glob
import json
import os
import sys

import imagehash
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
gimp = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/gimp/2.0/help/en"
files = sorted(glob.glob(os.path.join(gimp, "images/**/*.png"), recursive=True)
               + glob.glob(os.path.join(gimp, "images/**/*.jpg"), recursive=True))
out = {}
for f in files:
    img = Image.open(f)
    if min(img.size) < 100:
        continue
    out[os.path.relpath(f, gimp)] = str(imagehash.phash(img))
    if len(out) == 40:
        break
with open(os.path.join(ROOT, "tests/fixtures/phash/gimp.json"), "w") as fh:
    json.dump(out, fh, indent=1)
print(len(out), "hashes")
