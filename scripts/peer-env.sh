#!/usr/bin/env bash
# The Python peers realsyn is checked and benchmarked against (PyTorch open_clip,
# transformers, ...), pinned, in .peer-venv/. Only needed to regenerate fixtures
# (tests/peer/*.py) or run benches/; the Rust tests read committed fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .peer-venv
.peer-venv/bin/pip install -q -r scripts/peer-requirements.txt
.peer-venv/bin/python -c "import open_clip, torch; print('peer env ready: torch', torch.__version__, 'open_clip', open_clip.__version__)"
