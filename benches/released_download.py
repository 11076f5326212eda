#!/usr/bin/env python3
"""img2dataset beside `realsyn dataset from-released` on the same released-format
parquet, served by one loopback HTTP server, in one run (benches/released_download.sh).

    released_download.py REALSYN_BINARY N THREADS

Writes a parquet of N rows (raw_image_url, text1, text2, text3, syn_text) whose URLs
name the GIMP manual's images (Debian gimp-help-en) on a threaded loopback server,
then runs img2dataset (one process per core, THREADS threads each, center_crop 256, quality 95,
webdataset, 1,000 per shard) and realsyn (the same settings), and prints one JSON
line per tool: seconds, samples written, images/s.
"""
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq

GIMP_IMAGES = "/usr/share/gimp/2.0/help/en/images"


def main():
    binary, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    files = sorted(
        os.path.relpath(os.path.join(d, f), GIMP_IMAGES)
        for d, _, fs in os.walk(GIMP_IMAGES)
        for f in fs
        if f.lower().endswith((".png", ".jpg", ".jpeg"))
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=GIMP_IMAGES)
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    tmp = tempfile.mkdtemp()
    rows = [files[i % len(files)] for i in range(n)]
    table = pa.table({
        "raw_image_url": [base + f for f in rows],
        "text1": [f"an image of {f}" for f in rows],
        "text2": ["text two"] * n,
        "text3": ["text three"] * n,
        "syn_text": ["a synthetic text"] * n,
    })
    parquet = os.path.join(tmp, "realsyn.parquet")
    pq.write_table(table, parquet)

    def run(name, cmd, out):
        t = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s = time.time() - t
        sizes = {}
        for f in os.listdir(out):
            if f.endswith("_stats.json"):
                sizes[f] = json.load(open(os.path.join(out, f)))["successes"]
        ok = sum(sizes.values())
        print(json.dumps({"impl": name, "rows": n, "written": ok, "seconds": s, "images_per_s": n / s}))

    out = os.path.join(tmp, "img2dataset")
    run("img2dataset", [
        sys.executable, "-m", "img2dataset.main", "--url_list", parquet, "--input_format", "parquet",
        "--url_col", "raw_image_url", "--caption_col", "text1",
        "--save_additional_columns", '["text2","text3","syn_text"]',
        "--output_format", "webdataset", "--output_folder", out, "--processes_count", str(os.cpu_count()),
        "--thread_count", str(threads), "--image_size", "256", "--resize_mode", "center_crop",
        "--encode_quality", "95", "--number_sample_per_shard", "1000", "--distributor", "multiprocessing",
        "--enable_wandb", "False"], out)
    out = os.path.join(tmp, "realsyn")
    run("realsyn", [
        binary, "dataset", "from-released", "--parquet", parquet, "--out", out,
        "--resize", "256:center_crop", "--jpeg-quality", "95", "--samples-per-shard", "1000",
        "--threads", str(threads)], out)
    server.shutdown()
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
