#!/usr/bin/env bash
# `warden harden eval --device cuda` on one GPU machine. The acceptance protocol of issue 4 (L∞
# ε 0.1: FGSM → PGD-50 step 0.01 × 5 restarts → APGD-CE → APGD-DLR, 100 iterations) runs on the
# whole Fashion-MNIST test set for each model given, on the GPU. The first model is also evaluated
# on its first 2,000 test images by the GPU and by Warden's CPU engine on every core of the same
# machine, for a ratio measured in one run.
#
# Usage: bash scripts/gpu-eval.sh WARDEN_CUDA_BINARY OUT_DIR SECONDS MODEL_DIR...
#   SECONDS  how long the script may run: each evaluation is cut at the time left (exit 124), and
#            one that would start with under 30 s left is skipped.
# Writes into OUT_DIR one file, gpu-eval.tar.gz, holding NAME.json (the report, with per-attack
# seconds), NAME.md and NAME.log per evaluation, and gpu.txt (a device call returns at most eight
# files; the first run of this script lost a report to that limit).
# Needs: the NVIDIA driver and NVRTC, Fashion-MNIST in $WARDEN_FASHION_MNIST or Debian's package.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$1
out=$2
budget=$3
shift 3
mkdir -p "$out"
final=$out
out=$(mktemp -d)
. scripts/cuda-libs.sh
start=$(date +%s)
threads=$(nproc)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
protocol=(--eps 0.1 --pgd-steps 50 --pgd-step 0.01 --restarts 5 --apgd-iters 100
  --apgd-restarts 1 --severities 0 --threads "$threads")
ev() { # NAME MODEL_DIR EXTRA_ARGS...
  local name=$1 dir=$2
  shift 2
  local left=$((budget - ($(date +%s) - start)))
  if [ "$left" -lt 30 ]; then
    echo "$name: skipped, $left s left"
    return
  fi
  timeout "$left" "$bin" harden eval "$dir" "${protocol[@]}" "$@" \
    -o "$out/$name.json" --md "$out/$name.md" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc at $(($(date +%s) - start)) s: $(tail -1 "$out/$name.log")"
}
first=$1
base=$(basename "$first")
ev "$base-cuda" "$first" --device cuda
ev "$base-2000-cpu" "$first" --limit 2000 --device cpu
ev "$base-2000-cuda" "$first" --limit 2000 --device cuda
shift
for m in "$@"; do
  ev "$(basename "$m")-cuda" "$m" --device cuda
done
tar -C "$out" -czf "$final/gpu-eval.tar.gz" .
