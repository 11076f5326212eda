#!/usr/bin/env python3
"""Check that Python TensorBoard reads a realsyn run's event files.

    .peer-venv/bin/python tests/peer/tensorboard_read.py RUN_DIR/tensorboard
Prints every scalar tag with its first and last (step, value); exits 1 if none.
"""
import glob
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

files = sorted(glob.glob(f"{sys.argv[1]}/events.out.tfevents.*"))
tags = 0
for f in files:
    ea = EventAccumulator(f)
    ea.Reload()
    for tag in ea.Tags()["scalars"]:
        s = ea.Scalars(tag)
        print(f"{f.split('/')[-1]} {tag}: {len(s)} points, first {(s[0].step, s[0].value)}, last {(s[-1].step, s[-1].value)}")
        tags += 1
sys.exit(0 if tags else 1)
