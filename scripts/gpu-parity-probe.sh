#!/usr/bin/env bash
# One layer at a time: does a device compute each kind of layer as Warden's CPU engine does? Each
# architecture in docs/results/gpu-imported/probe/archs/ (one convolution or pooling geometry,
# then a linear head) is trained for 2 epochs on the CPU engine on the colour task of
# docs/results/torchvision-import/colour_task.py, then evaluated briefly on DEVICE, which first
# compares its logits and input gradients with the CPU engine's (`harden eval` prints the
# comparison and refuses a device that disagrees). This is how the strided 1 × 1 convolution's
# wrong gradients on burn 0.21's CUDA backend were found.
#
# Usage: bash scripts/gpu-parity-probe.sh WARDEN_BINARY OUT_DIR [DEVICE]   (DEVICE: cuda, the default, or flex)
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
out=$(realpath -m "$2")
device=${3:-cuda}
mkdir -p "$out"
[ "$device" = flex ] || . scripts/cuda-libs.sh
task=$(mktemp -d)
(cd "$task" && python3 "$OLDPWD/docs/results/torchvision-import/colour_task.py")
for arch in docs/results/gpu-imported/probe/archs/*.json; do
  name=$(basename "$arch" .json)
  "$bin" harden train --arch "$arch" --train-images "$task/train-images.idx" \
    --train-labels "$task/train-labels.idx" --method clean --epochs 2 --batch 32 \
    --val-per-class 30 --threads 2 -o "$task/$name" > /dev/null 2>&1 || { echo "$name: training failed"; continue; }
  echo "== $name"
  timeout 60 "$bin" harden eval "$task/$name" --test-images "$task/test-images.idx" \
    --test-labels "$task/test-labels.idx" --eps 0.03 --pgd-steps 1 --pgd-step 0.01 \
    --apgd-iters 0 --severities 0 --limit 16 --device "$device" -o "$out/$name.json" 2>&1 |
    grep -E "against|error"
done | tee "$out/probe.txt"
rm -rf "$task"
