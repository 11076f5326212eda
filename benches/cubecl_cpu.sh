#!/usr/bin/env bash
# The GPU build's code path on this CPU machine: Burn's CubeCL backend (burn-cubecl, the
# backend `--features cuda` runs) compiled to Vulkan SPIR-V and run by Mesa's lavapipe, a
# Vulkan driver on the CPU. The kernels, the autodiff patches of third_party/, the
# trainer's step and the foreach AdamW are the ones a GPU runs; only the runtime differs
# (no NCCL, and f32 only: lavapipe has no bf16). Slow (seconds per step): a check and a
# count, not a speed.
#
#   apt-get install mesa-vulkan-drivers libvulkan1
#   benches/cubecl_cpu.sh                  # builds realsyn --features wgpu (~10 min cold)
#   FUSION=1 benches/cubecl_cpu.sh         # ... --features wgpu,fusion (Burn's fusion)
#   REALSYN_BIN=path/to/realsyn ...        # a binary built with --features wgpu[,fusion]
#
# Phases (PHASES, default "check kernels"):
#   check    10 Fashion-MNIST steps of 128 on `cpu` (flex) and on `wgpu` from the same
#            weights, for each model of CHECK_MODELS (default: the CPU test recipe's CLIP,
#            recipes/models/fashion-mnist-tiny.json, and its EVA02 twin,
#            fashion-mnist-eva02-tiny.json): PASS when every loss agrees within 1e-4
#            relative (2026-12-06: 3.9e-7 and 8.2e-7 at worst; flex and CubeCL sum in
#            other orders)
#   kernels  one training step of a model with ViT-B/32's structure (12 + 12 blocks, patch
#            32 at 224 px, 77 tokens; width 128 so that lavapipe runs it in seconds) under
#            CubeCL's profiler: how many kernels of which kind. Widths change the kernels'
#            sizes, not their number, so this is the number of launches a ViT-B/32 step
#            costs on a GPU, each of them host work (docs/performance.md, "GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
PHASES=${PHASES:-check kernels}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/realsyn-target}
# wgpu wants a runtime directory; a session without a login has none.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
if [ -z "${REALSYN_BIN:-}" ]; then
  features=wgpu${FUSION:+,fusion}
  cargo build --release -q -p realsyn-cli --features "$features"
  REALSYN_BIN=$CARGO_TARGET_DIR/realsyn-${features/,/-}
  cp "$CARGO_TARGET_DIR/release/realsyn" "$REALSYN_BIN"
fi
BIN=$REALSYN_BIN
if ! "$BIN" bench train-step --help | grep -q wgpu; then
  echo "$BIN was not built with --features wgpu" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
has() { [[ " $PHASES " == *" $1 "* ]]; }

if has check; then
  "$BIN" dataset fashion-mnist --out "$work/fm" --limit-train 1280 --per-shard 1280 >/dev/null
  source benches/fm_recipe.sh
  failed=0
  for model in ${CHECK_MODELS:-fashion-mnist-tiny fashion-mnist-eva02-tiny}; do
    recipe() { # device steps [pretrained] -> a recipe on stdout
      fm_recipe "$work/fm/train/00000.tar" "$1" "$2" "$work/$model-$1-$2" "${3:-}" \
        "recipes/models/$model.json"
    }
    # The same starting weights on both: random init draws on the device, and flex's
    # generator is not CubeCL's.
    recipe cpu 1 "" > "$work/init.toml"
    "$BIN" train --recipe "$work/init.toml" >/dev/null 2>&1
    init=$work/$model-cpu-1/checkpoints/step_00000001/model.safetensors
    for dev in cpu wgpu; do
      recipe $dev 10 "$init" > "$work/$dev.toml"
      start=$SECONDS
      "$BIN" train --recipe "$work/$dev.toml" > "$work/$dev.log" 2>&1 || {
        tail -20 "$work/$dev.log" >&2
        exit 1
      }
      echo "check: $model on $dev, 10 steps in $((SECONDS - start)) s"
    done
    python3 - "$model" "$work/$model-cpu-10/metrics.jsonl" "$work/$model-wgpu-10/metrics.jsonl" <<'PY' || failed=1
import json, sys
model = sys.argv[1]
flex, cube = ([r["loss"] for r in map(json.loads, open(p)) if "loss" in r] for p in sys.argv[2:])
print("flex  ", " ".join(f"{x:.6f}" for x in flex))
print("cubecl", " ".join(f"{x:.6f}" for x in cube))
d = max((abs(a - b) / abs(a) for a, b in zip(flex, cube)), default=float("nan"))
ok = len(flex) == len(cube) == 10 and d < 1e-4
print(f"check: {model}: {'PASS' if ok else 'FAIL'}: max relative loss difference {d:.2e} over {len(cube)} steps")
sys.exit(0 if ok else 1)
PY
  done
  [ "$failed" = 0 ] || exit 1
fi

if has kernels; then
  cat > "$work/b32-structure.json" <<'EOF'
{
    "embed_dim": 128,
    "vision_cfg": {"image_size": 224, "layers": 12, "width": 128, "head_width": 64, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 12}
}
EOF
  # The bench syncs after each step and CubeCL writes its table at each sync: the last
  # table is the timed step's (the warm-up step compiles the kernels).
  CUBECL_DEBUG_LOG=$work/cubecl.log CUBECL_DEBUG_OPTION=profile "$BIN" bench train-step \
    --arch "$work/b32-structure.json" --batch-size 4 --device wgpu --warmup 1 --iters 1 >/dev/null
  echo "kernels: a ViT-B/32-structured f32 training step on CubeCL (lavapipe)"
  python3 benches/cubecl_profile.py "$work/cubecl.log" "${TOP:-30}"
fi
