#!/usr/bin/env bash
# One short lease on a GPU machine that has no Rust and no network (python3 with torch
# there): what the 2026-12-04 numbers in docs/performance.md ("GPU") came from.
# Everything it needs travels with the checkout:
#
#   GPU_DIR/realsyn.xz          cargo build --release -p realsyn-cli --features cuda
#                               (CUDARC_CUDA_VERSION=13000 to match a CUDA 13.0 driver),
#                               xz-compressed; not `strip`ped: the host phase names
#                               functions from its symbol table
#   GPU_DIR/realsyn-fusion.xz   optional: the same with Burn's fusion (--features cuda,fusion;
#                               no autotune, with which it did not finish a step on 2026-12-04;
#                               it runs with autodiff on CubeCL's Vulkan path: benches/cubecl_cpu.sh)
#   GPU_DIR/fm/train/00000.tar  realsyn dataset fashion-mnist --out GPU_DIR/fm
#                               --limit-train 2560 --per-shard 2560 (test split not needed)
#   .whl/*.whl                  open_clip_torch, ftfy, wcwidth wheels (pip download)
#
#   OUT=/tmp/out PHASES="smoke nccl amp fm f32 sweep" benches/gpu_lease.sh
#   OUT=/tmp/out PHASES="smoke host matmul attention kernels" benches/gpu_lease.sh   # first, since 2026-12-07
#
# Phases, in the order a short lease should spend its time:
#   smoke  ViT-B/32 amp_bf16 batch 256 with the fused binary, if any; falls back to the plain one
#          (NCCL's phase always runs the plain one: it cannot read fused tensors)
#   amp    benches/gpu.sh in amp_bf16 (ViT-B/32, B/16, L/14 beside open_clip --amp)
#   nccl   5 Fashion-MNIST steps with REALSYN_COLLECTIVES=nccl (a communicator of one rank:
#          the gradients go through NCCL's all-reduce) against 5 without: same losses; the
#          all-reduce alone beside torch's nccl (benches/all_reduce.sh, one rank per GPU);
#          with several GPUs, 2 training ranks under torchrun-style variables too
#   fm     20 Fashion-MNIST steps in f32 and in amp_bf16 (bf16 tracks f32; metrics.jsonl back),
#          then the same with the EVA02 tower (losses in progress.txt)
#   f32    benches/gpu.sh in f32
#   sweep  ViT-B/32 amp_bf16 at batch 8, 64 and 256: a time that barely grows with the
#          batch is per-step overhead (kernel launches, host work), not arithmetic
#   matmul the training step's own bf16 GEMMs (and 8192^3) per CubeCL kernel family beside
#          torch.matmul (benches/matmul_families.py tabulates), then the step with the fastest
#   attention the ViT-B/16 amp_bf16 step of 128 per attention kernel (REALSYN_ATTENTION):
#          Burn's decomposition, the default, against cubek's flash kernels
#   kernels one ViT-B/32 amp_bf16 step of 256 with CubeCL's profiler on (every kernel timed
#          on the device, so the wall time means nothing): how many kernels a step launches
#          and how long the device is busy with them; the busiest 25 go to progress.txt
#   host   the same step (5 of them) with the host threads sampled (`--profile-host`): the
#          CPU time of Burn's autodiff, CubeCL's launches and the CUDA driver, by thread
#          and function, against the steps' wall time, and the step thread's wall time
#          by place, waits included (launching, or waiting for the device; tables to
#          progress.txt; the CPU flame graph is host-profile.svg)
# At most 8 files come back from OUT: progress.txt, stderr.txt, smoke.jsonl, gpu.jsonl,
# gpu.log, fm.log, fm-metrics.jsonl (every Fashion-MNIST run's metrics, each line with
# its run's name), host-profile.svg (sweep, matmul, attention and host lines go to
# smoke.jsonl).
set -u
cd "$(dirname "$0")/.."
GPU_DIR=${GPU_DIR:-.gpu}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
T0=$SECONDS
log() { echo "## [$((SECONDS - T0)) s] $*" | tee -a "$OUT/progress.txt"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl &&
  export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee -a "$OUT/progress.txt"
python3 -c 'import torch, open_clip; print("torch", torch.__version__, "open_clip", open_clip.__version__)' |
  tee -a "$OUT/progress.txt"
# cudarc loads libcuda, libnvrtc (and libnccl) at run time: the driver's and the
# toolkit's folders, and the CUDA wheels beside torch.
libs=$(python3 - <<'PY'
import glob, os
dirs = set()
for pat in ["/usr/local/cuda*/lib64", "/usr/local/cuda*/targets/x86_64-linux/lib", "/usr/local/nvidia/lib64",
            "/usr/lib/x86_64-linux-gnu"]:
    dirs.update(glob.glob(pat))
try:
    import nvidia
    for p in nvidia.__path__:
        dirs.update(glob.glob(os.path.join(p, "*", "lib")))
except ImportError:
    pass
want = ("libnvrtc", "libcuda.so", "libnccl")
print(":".join(sorted(d for d in dirs if any(glob.glob(f"{d}/{w}*") for w in want))))
PY
)
export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >> "$OUT/progress.txt"
for b in "$GPU_DIR"/realsyn*.xz; do
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$b" "${b%.xz}" && chmod +x "${b%.xz}"
done

PHASES=${PHASES:-smoke host nccl amp fm f32 sweep matmul attention kernels}
has() { [[ " $PHASES " == *" $1 "* ]]; }
train_step() { # binary batch -> one JSON line (ViT-B/32 amp_bf16)
  timeout 120 "$1" bench train-step --arch ViT-B-32 --batch-size "$2" --device cuda --warmup 2 --iters 3 \
    --precision amp_bf16 2>> "$OUT/stderr.txt" | tee -a "$OUT/smoke.jsonl"
}
best=$GPU_DIR/realsyn
if has smoke; then
  if [ -x "$GPU_DIR/realsyn-fusion" ]; then
    log "smoke: fused binary"
    [ -n "$(train_step "$GPU_DIR/realsyn-fusion" 256)" ] && best=$GPU_DIR/realsyn-fusion
  fi
  [ "$best" = "$GPU_DIR/realsyn" ] && { log "smoke: plain binary"; train_step "$best" 256; }
fi
log "binary: $best"
gpu() { # precision
  OUT_JSONL=$OUT/gpu.jsonl REALSYN_BIN=$best RUN_TIMEOUT=${RUN_TIMEOUT:-90} ITERS=5 WARMUP=2 \
    ARCHS="ViT-B-32 ViT-B-16 ViT-L-14" PRECISIONS="$1" NGPU=1 benches/gpu.sh >> "$OUT/gpu.log" 2>&1
  tail -8 "$OUT/gpu.log"
}
source benches/fm_recipe.sh
fm_toml() { # steps [model config] -> /tmp/fm.toml
  fm_recipe "$GPU_DIR/fm/train/00000.tar" cuda "$1" /tmp/fm "" "${2:-}" > /tmp/fm.toml
}
keep_metrics() { # run name: /tmp/NAME/metrics.jsonl -> OUT/fm-metrics.jsonl, lines marked with the run
  python3 -c 'import json,sys; [print(json.dumps({"run": sys.argv[2], **json.loads(l)})) for l in open(sys.argv[1])]' \
    "/tmp/$1/metrics.jsonl" "$1" >> "$OUT/fm-metrics.jsonl"
}
losses() { python3 -c 'import json,sys; print(" ".join("%.6f" % r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r))' "$1"; }
if has nccl; then
  fm_toml 5
  for c in auto nccl; do
    log "nccl: REALSYN_COLLECTIVES=$c, 1 rank"
    REALSYN_COLLECTIVES=$c timeout 90 "$GPU_DIR/realsyn" train --recipe /tmp/fm.toml --set "output.dir=\"/tmp/fm-$c\"" \
      >> "$OUT/fm.log" 2>&1
    losses "/tmp/fm-$c/metrics.jsonl" | tee -a "$OUT/progress.txt"
  done
  python3 - /tmp/fm-auto/metrics.jsonl /tmp/fm-nccl/metrics.jsonl <<'PY' | tee -a "$OUT/progress.txt"
import json, sys
a, b = ([r["loss"] for r in map(json.loads, open(p)) if "loss" in r] for p in sys.argv[1:])
d = max((abs(x - y) / abs(x) for x, y in zip(a, b)), default=float("nan"))
print(f"nccl: {'PASS' if len(a) == len(b) == 5 and d < 1e-5 else 'FAIL'}: {len(b)} of 5 steps, max relative loss difference {d:.2e}")
PY
  ngpu=$(nvidia-smi -L | wc -l)
  # The gradient all-reduce alone (ViT-B/32's 605 MB) beside torch's nccl, one rank per
  # GPU; on one GPU a communicator of one, which still checks the sums NCCL returns.
  log "nccl: all-reduce of 151M f32 on $ngpu GPU(s), realsyn and torch.distributed"
  REALSYN_COLLECTIVES=nccl DEVICE=cuda REALSYN_BIN=$GPU_DIR/realsyn PEER_PYTHON=python3 timeout 120 \
    benches/all_reduce.sh "$ngpu" >> "$OUT/gpu.log" 2>&1
  tail -4 "$OUT/gpu.log" | tee -a "$OUT/progress.txt"
  if [ "$ngpu" -ge 2 ]; then
    log "nccl: 2 ranks on 2 GPUs (torchrun variables), data.streams = 2"
    for r in 0 1; do
      RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 timeout 120 "$GPU_DIR/realsyn" train \
        --recipe /tmp/fm.toml --set "output.dir=\"/tmp/fm-2\"" --set "data.streams=2" \
        >> "$OUT/fm.log" 2>&1 &
    done
    wait
    losses /tmp/fm-2/metrics.jsonl | tee -a "$OUT/progress.txt"
  fi
fi
if has amp; then log "gpu.sh amp_bf16"; gpu amp_bf16; fi
if has fm; then
  fm_toml 20
  for prec in f32 amp_bf16; do
    log "fashion-mnist $prec"
    timeout 90 "$best" train --recipe /tmp/fm.toml --set "train.precision=\"$prec\"" \
      --set "output.dir=\"/tmp/fm-$prec\"" >> "$OUT/fm.log" 2>&1
    tail -1 "$OUT/fm.log"
    keep_metrics "fm-$prec"
  done
  # EVA02, the paper's encoder, the same way (its SwiGLU, rotary and sub-LN kernels
  # in bf16); the losses go to progress.txt.
  fm_toml 20 recipes/models/fashion-mnist-eva02-tiny.json
  for prec in f32 amp_bf16; do
    log "fashion-mnist eva02 $prec"
    timeout 90 "$best" train --recipe /tmp/fm.toml --set "train.precision=\"$prec\"" \
      --set "output.dir=\"/tmp/fm-eva02-$prec\"" >> "$OUT/fm.log" 2>&1
    losses "/tmp/fm-eva02-$prec/metrics.jsonl" | tee -a "$OUT/progress.txt"
    keep_metrics "fm-eva02-$prec"
  done
fi
if has f32; then log "gpu.sh f32"; gpu f32; fi
if has sweep; then
  for b in 8 64 256; do log "sweep: batch $b"; train_step "$best" "$b"; done
fi
if has host; then
  log "host: 5 ViT-B/32 amp_bf16 steps of 256, host threads sampled"
  timeout 180 "$best" bench train-step --arch ViT-B-32 --batch-size 256 --device cuda --warmup 2 --iters 5 \
    --precision amp_bf16 --profile-host /tmp/host 2>> "$OUT/stderr.txt" | tee -a "$OUT/smoke.jsonl"
  head -c 45000 /tmp/host/host-profile.txt >> "$OUT/progress.txt"
  cp /tmp/host/host-profile.svg "$OUT/"
fi
if has matmul; then
  # The training step's own products (ViT-B/16 at 128 per GPU: 25,216 tokens of width
  # 768 through the MLP's first layer) forward and both gradients, and the 8192^3
  # square of 2026-12-04; bf16; torch.matmul, then each CubeCL kernel family
  # (REALSYN_MATMUL, third_party/burn-cubecl/PATCHES.md). The fastest family on the
  # step's three products then times the ViT-B/32 step beside the default's.
  shapes="--shape 25216x3072x768:nn --shape 768x3072x25216:tn --shape 25216x768x3072:nt --shape 8192x8192x8192"
  log "matmul bf16: torch"
  # shellcheck disable=SC2086
  timeout 60 python3 benches/model_bench.py --mode matmul $shapes --dtype bf16 --device cuda |
    tee -a "$OUT/smoke.jsonl"
  for family in ${MATMUL_FAMILIES:-auto autotune ordered_double_mma double_cyclic_mma specialized_tma_mma}; do
    log "matmul bf16: REALSYN_MATMUL=$family"
    # shellcheck disable=SC2086
    REALSYN_MATMUL=$family timeout 120 "$GPU_DIR/realsyn" bench matmul $shapes --dtype bf16 --device cuda \
      2>> "$OUT/stderr.txt" | tee -a "$OUT/smoke.jsonl"
  done
  family=$(python3 benches/matmul_families.py "$OUT/smoke.jsonl" 2>&1 | tee -a "$OUT/progress.txt" | tail -1)
  # A traceback's last line is no family name (REALSYN_MATMUL would refuse it).
  [[ "$family" =~ ^[a-z0-9_]+$ ]] || family=auto
  log "matmul: ViT-B/32 amp_bf16 step of 256 with REALSYN_MATMUL=$family (the default's: smoke)"
  REALSYN_MATMUL=$family train_step "$GPU_DIR/realsyn" 256
fi
if has attention; then
  # Attention's kernel (REALSYN_ATTENTION, third_party/burn-cubecl/PATCHES.md): Burn's
  # decomposition (scores, softmax, weighted sum, the scores written out: the default)
  # against cubek's flash kernels (one kernel; f16 tiles, as precise as amp_bf16's bf16
  # inputs), on ViT-B/16 (197 tokens) at 128 in amp_bf16, with the matmul family the
  # matmul phase chose. Strict: a kernel that cannot run gives an error in stderr.txt
  # and no line, rather than the decomposition's time under its name.
  for kernel in ${ATTENTION_KERNELS:-fallback flash_accelerated_2 flash_accelerated_4 flash_accelerated_8 flash_unit}; do
    log "attention: ViT-B/16 amp_bf16 step of 128 with REALSYN_ATTENTION=$kernel"
    REALSYN_ATTENTION=$kernel REALSYN_KERNELS_STRICT=1 REALSYN_MATMUL=${family:-auto} timeout 120 \
      "$GPU_DIR/realsyn" bench train-step --arch ViT-B-16 --batch-size 128 --device cuda --warmup 2 \
      --iters 3 --precision amp_bf16 2>> "$OUT/stderr.txt" | tee -a "$OUT/smoke.jsonl"
  done
fi
if has kernels; then
  log "kernels: one profiled step"
  # CUBECL_DEBUG_LOG names the log file; CUBECL_DEBUG_OPTION=profile times each kernel.
  # CubeCL writes a table (name, count, device time) at every sync: the bench syncs
  # after each step, so the last table is the timed step's.
  CUBECL_DEBUG_LOG=/tmp/cubecl.log CUBECL_DEBUG_OPTION=profile timeout 180 "$best" bench train-step \
    --arch ViT-B-32 --batch-size 256 --device cuda --warmup 1 --iters 1 --precision amp_bf16 \
    2>> "$OUT/stderr.txt" | tee -a "$OUT/smoke.jsonl"
  python3 benches/cubecl_profile.py /tmp/cubecl.log 25 | tee -a "$OUT/progress.txt"
fi
log "done"
