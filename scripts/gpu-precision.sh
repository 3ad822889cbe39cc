#!/usr/bin/env bash
# Which kernels burn's CUDA backend compiles for the evaluation of an imported torchvision
# ResNet-18, and whether any multiplies in TF32 (10-bit mantissas) rather than f32: cubecl writes
# every compiled kernel's source to CUBECL_DEBUG_LOG, and this counts those with TF32 operands.
# The same evaluation runs on Warden's CPU engine (every core) for the reports to be compared;
# then MobileNet V2's evaluation on both, for the time, and PyTorch's PGD-10 against Warden's
# CPU engine on every core (scripts/bench/torchvision_pgd_bench.py).
#
# Usage: bash scripts/gpu-precision.sh WARDEN_CUDA_BINARY OUT_DIR [COUNT]
# Writes OUT_DIR/gpu-precision.tar.gz. Needs the NVIDIA driver, NVRTC and python3 with torch,
# torchvision and onnx (scripts/reference/make_onnx_torchvision_fixture.py makes the models).
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
final=$(realpath -m "$2")
count=${3:-32}
mkdir -p "$final"
out=$(mktemp -d)
. scripts/cuda-libs.sh
threads=$(nproc)
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
protocol=(--eps 0,0.002,0.005 --pgd-steps 10 --pgd-step 0.001 --restarts 1 --apgd-iters 10
  --severities 0 --threads "$threads")
for model in resnet18 mobilenet-v2; do
  mkdir -p "$out/$model"
  python3 scripts/reference/make_onnx_torchvision_fixture.py "--$model" "$out/$model" \
    --count "$count" > "$out/$model/make.log" 2>&1 || { stamp "$model: export failed"; continue; }
done
ev() { # NAME MODEL DEVICE [ENV...]
  local name=$1 model=$2 dev=$3
  shift 3
  local d=$out/$model s
  s=$(date +%s%N)
  env "$@" timeout 150 "$bin" harden eval "$d/$model.onnx" --test-images "$d/images.idx" \
    --test-labels "$d/labels.idx" "${protocol[@]}" --device "$dev" \
    -o "$out/$name.json" --md "$out/$name.md" > "$out/$name.log" 2>&1
  stamp "$name: exit $?, $((($(date +%s%N) - s) / 1000000)) ms: $(tail -1 "$out/$name.log" | cut -c1-150)"
}
ev r18-cuda resnet18 cuda CUBECL_DEBUG_LOG=/tmp/cubecl.log
ev r18-cpu resnet18 cpu
ev mv-cuda mobilenet-v2 cuda
ev mv-cpu mobilenet-v2 cpu
# The kernels cubecl compiled for the first evaluation: how many, how many with TF32 operands,
# and of which kinds. (burn-cuda is built without its `autotune` feature, so each operation has
# one kernel and there are no autotune decisions to log.)
{
  awk '/\[START_KERNEL_COMPILATION\]/ { k++; t = 0 } /[Tt][Ff]32/ { if (!t) { n++; t = 1 } }
    END { print "kernels compiled: " k ", of which with TF32 operands: " n + 0 }' /tmp/cubecl.log
  echo "kinds compiled:"
  grep -A1 '^id: KernelId' /tmp/cubecl.log | grep 'type:' | sed 's/<.*//; s/.*:://' | sort | uniq -c | sort -rn
} > "$out/kernels.txt" 2>&1
cat "$out/kernels.txt"
for model in mobilenet-v2 resnet18; do
  python3 scripts/bench/torchvision_pgd_bench.py "$bin" "$out/$model" "$model" --threads "$threads" \
    --rounds 2 2>&1 | tail -4 | tee "$out/pgd-bench-$model.txt"
done
gzip -c /tmp/cubecl.log > "$out/cubecl.log.gz"
rm -f "$out"/*/*.onnx
tar -C "$out" -czf "$final/gpu-precision.tar.gz" .
stamp done
