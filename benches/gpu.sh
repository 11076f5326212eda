#!/usr/bin/env bash
# CLIP training throughput on a GPU machine: realsyn (Burn CUDA, amp_bf16 and f32)
# beside open_clip (PyTorch, amp_bf16 and fp32) on the same GPU, one run; then
# realsyn amp_bf16 on all GPUs of the machine (one process per GPU, the distributed
# step) for the scaling efficiency.
# The GPU machine needs no Rust: build realsyn elsewhere with --features cuda.
#
#   REALSYN_BIN=./realsyn benches/gpu.sh
#   ARCHS="ViT-B-32" ITERS=5 REALSYN_BIN=./realsyn benches/gpu.sh
#   PRECISIONS=amp_bf16 RUN_TIMEOUT=120 REALSYN_BIN=./realsyn benches/gpu.sh   # short lease
#   DEVICE=cpu ARCHS=ViT-B-32 BATCH_B32=4 ITERS=1 WARMUP=0 NGPU=2 benches/gpu.sh   # dry run on CPU
#
# Runs go in order of what matters most on a short lease: every arch in amp_bf16
# before any in f32, realsyn before open_clip. A run that fails or passes
# RUN_TIMEOUT seconds is reported and skipped. OUT_JSONL keeps the JSON lines.
#
# Needs python3 with torch and open_clip_torch (PEER_PYTHON). Prints JSON lines, then
# a table: samples/s per GPU, realsyn / open_clip ratios, and MFU (model FLOPs
# utilisation: 3 x forward FLOPs per sample, counted by torch's FlopCounterMode on
# the peer model, against the GPU's dense bf16 peak; PEAK_TFLOPS overrides).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${REALSYN_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}/release/realsyn}
PY=${PEER_PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
ARCHS=${ARCHS:-ViT-B-32 ViT-B-16 ViT-L-14}
PRECISIONS=${PRECISIONS:-amp_bf16 f32}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-3}
RUN_TIMEOUT=${RUN_TIMEOUT:-0}
if [ -z "${NGPU:-}" ]; then
  NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
fi
batch_for() {
  case "$1" in
    ViT-B-32) echo "${BATCH_B32:-256}" ;;
    ViT-B-16) echo "${BATCH_B16:-128}" ;;
    *) echo "${BATCH_L14:-64}" ;;
  esac
}
# The options both implementations take for one arch, in the array `common`.
common_for() {
  common=(--arch "$1" --batch-size "$(batch_for "$1")" --warmup "$WARMUP" --iters "$ITERS" --device "$DEVICE")
}
out=${OUT_JSONL:-$(mktemp)}
# One timed run; its JSON line goes to $out. A failure or a timeout is said, not fatal.
measure() {
  local what=$1
  shift
  local t0=$SECONDS
  if timeout "$RUN_TIMEOUT" "$@" | tee -a "$out"; then
    echo "# $what: $((SECONDS - t0)) s" >&2
  else
    echo "# $what: FAILED or timed out after $((SECONDS - t0)) s (exit ${PIPESTATUS[0]})" >&2
  fi
}
echo "realsyn: $BIN; peer: $("$PY" -c 'import torch, open_clip; print("torch", torch.__version__, "open_clip", open_clip.__version__)'); GPUs: $NGPU" >&2
for prec in $PRECISIONS; do
  amp=()
  [ "$prec" = amp_bf16 ] && amp=(--amp)
  for arch in $ARCHS; do
    common_for "$arch"
    measure "realsyn $arch $prec" "$BIN" bench train-step "${common[@]}" --precision "$prec"
    measure "open_clip $arch $prec" "$PY" benches/model_bench.py --mode train-step "${common[@]}" "${amp[@]}"
  done
done
if [ "$NGPU" -gt 1 ]; then
  for arch in $ARCHS; do
    common_for "$arch"
    # One process per GPU, as torchrun would start them; rank 0 prints.
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pids=()
    for r in $(seq 0 $((NGPU - 1))); do
      RANK=$r WORLD_SIZE=$NGPU LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
        timeout "$RUN_TIMEOUT" "$BIN" bench train-step "${common[@]}" --precision amp_bf16 | tee -a "$out" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
  done
fi
"$PY" - "$out" "$DEVICE" <<'PY'
import json, os, sys

import torch
import open_clip
from torch.utils.flop_counter import FlopCounterMode

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
device = sys.argv[2]
# Dense bf16 tensor-core peaks (vendor data sheets), per GPU.
PEAKS = {"H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
         "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}
peak = None
if os.environ.get("PEAK_TFLOPS"):
    peak = float(os.environ["PEAK_TFLOPS"]) * 1e12
elif device.startswith("cuda"):
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    print(f"GPU: {name}; bf16 dense peak {peak / 1e12 if peak else 'unknown'} TFLOP/s")


def train_flops_per_sample(arch):
    model = open_clip.create_model(arch)
    size = model.visual.image_size[0]
    tokens = torch.zeros(1, model.context_length, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, size, size), tokens)
    return 3 * fc.get_total_flops()  # forward + backward (2x forward)


print("\n| arch | implementation | precision | GPUs | batch/GPU | samples/s/GPU | vs open_clip amp_bf16 | vs open_clip fp32 | MFU |")
print("|---|---|---|---|---|---|---|---|---|")
for arch in dict.fromkeys(r["arch"] for r in rows):
    flops = train_flops_per_sample(arch)
    mine = [r for r in rows if r["arch"] == arch]
    peer = lambda bf16: next((r["items_per_s"] for r in mine
                              if r["impl"].startswith("open_clip") and r["backend"].endswith("-bf16") == bf16), None)
    amp, fp32 = peer(True), peer(False)
    ratio = lambda x, ref: f"{x / ref:.2f}" if ref else "-"
    one = None
    for r in mine:
        world = r.get("world", 1)
        per_gpu = r["items_per_s"]  # realsyn: per rank (--batch-size is per rank)
        prec = "amp_bf16" if r["backend"].endswith("-bf16") else "f32"
        mfu = f"{100 * per_gpu * flops / peak:.1f}%" if peak else "-"
        note = ""
        if r["impl"].startswith("realsyn") and prec != "f32":
            if world == 1:
                one = per_gpu
            elif one:
                note = f" (scaling {100 * per_gpu / one:.0f}%)"
        print(f"| {arch} | {r['impl']} | {prec} | {world} | {r['batch_size']} | {per_gpu:.1f}{note} | "
              f"{ratio(per_gpu, amp)} | {ratio(per_gpu, fp32)} | {mfu} |")
PY
