# Sourced by benches/gpu_lease.sh and benches/cubecl_cpu.sh: the Fashion-MNIST recipe
# they train (the CPU test's model, a OneCycle of 128 per step on one shard).
#   fm_recipe SHARD DEVICE STEPS OUT_DIR [PRETRAINED] [ARCH] > recipe.toml
# ARCH: a model config, recipes/models/fashion-mnist-tiny.json unless given
# (recipes/models/fashion-mnist-eva02-tiny.json: the EVA02 tower of the CPU tests).
fm_recipe() {
  cat <<EOF
[model]
arch = "${6:-recipes/models/fashion-mnist-tiny.json}"
${5:+pretrained = \"$5\"}
[data]
train = "$1"
workers = 2
shuffle_buffer = 500
[train]
epochs = 1
batch_size = 128
lr = 1e-3
pct_start = 0.3
seed = 0
max_steps = $3
device = "$2"
[output]
dir = "$4"
checkpoint_every = 100
EOF
}
