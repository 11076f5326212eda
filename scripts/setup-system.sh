#!/usr/bin/env bash
# System data the tests and demo use: Debian's dataset-fashion-mnist (70,000 real
# labelled images under /usr/share/datasets/fashion-mnist). Idempotent.
set -euo pipefail
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "installing dataset-fashion-mnist (Debian package)" >&2
$SUDO apt-get install -y dataset-fashion-mnist >/dev/null 2>&1 || {
    $SUDO apt-get update >/dev/null
    $SUDO apt-get install -y dataset-fashion-mnist
}
test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
