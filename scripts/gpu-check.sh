#!/usr/bin/env bash
# The GPU checks of `warden-burn`, as one short script for a machine with an NVIDIA GPU: the CUDA
# build's throughput against Warden's CPU engine on the same machine (same binary, same data),
# two short adversarial training runs on the GPU (without and with AWP) whose models are scored
# by the CPU engine, and the first model's evaluation (the acceptance cascade on 1,000 test images)
# on the GPU and on the CPU engine, which should agree within an example or two.
#
# Usage: bash scripts/gpu-check.sh [WARDEN_BINARY] [OUT_DIR]
#   WARDEN_BINARY  a `cargo build --release -p warden --features cuda` binary (built here when
#                  omitted; building needs no GPU and no CUDA toolkit, but without `nvcc` on the
#                  PATH cudarc binds the newest CUDA it knows: set CUDARC_CUDA_VERSION to the
#                  driver's, e.g. 13000 for the "CUDA Version: 13.0" that nvidia-smi prints)
#   OUT_DIR        where the JSON figures, logs and the model go (default: a new temporary folder)
# Needs at run time: the NVIDIA driver (libcuda) and NVRTC (libnvrtc, from a CUDA toolkit or the
# nvidia-cuda-nvrtc wheel); Fashion-MNIST in $WARDEN_FASHION_MNIST or Debian's dataset-fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
if [ -z "$bin" ]; then
  cargo build --release --quiet -p warden --features cuda
  bin=$PWD/target/release/warden
fi
. scripts/cuda-libs.sh
threads=$(nproc)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true

echo "== throughput: Warden's CPU engine ($threads threads), then CUDA, one epoch each"
"$bin" bench harden --device cpu --threads "$threads" --what all --json > "$out/bench-cpu.json" 2> "$out/bench-cpu.log"
"$bin" bench harden --device cuda --threads "$threads" --what all --json > "$out/bench-cuda.json" 2> "$out/bench-cuda.log"
grep RESULT "$out/bench-cpu.log" "$out/bench-cuda.log"

echo "== training on the GPU: cnn4, PGD-3, 2 epochs; validation and the files by the CPU engine"
"$bin" harden train --device cuda --arch cnn4 --method pgd --pgd-steps 3 --pgd-step 0.04 \
  --epochs 2 --eps-warmup 1 --lr 2e-3 --threads "$threads" -o "$out/cnn4-pgd3-cuda" 2>&1 |
  grep -E '^(epoch [0-9]+:|wrote)' | tee "$out/train-cuda.log"
echo "== the same with adversarial weight perturbation (one more pass per step)"
"$bin" harden train --device cuda --arch cnn4 --method pgd --pgd-steps 3 --pgd-step 0.04 \
  --epochs 2 --eps-warmup 1 --lr 2e-3 --awp 0.005 --threads "$threads" -o "$out/cnn4-pgd3-awp-cuda" 2>&1 |
  grep -E '^(epoch [0-9]+:|wrote)' | tee "$out/train-awp-cuda.log"
echo "== evaluation of the first model on the GPU and on the CPU engine (1,000 test images)"
for dev in cuda cpu; do
  "$bin" harden eval "$out/cnn4-pgd3-cuda" --eps 0.1 --severities 0 --limit 1000 --device "$dev" \
    --threads "$threads" -o "$out/eval-$dev.json" 2> "$out/eval-$dev.log"
  echo "$dev: $(tail -1 "$out/eval-$dev.log")"
done
echo "gpu-check: ok ($out)"
