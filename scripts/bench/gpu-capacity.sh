#!/usr/bin/env bash
# One GPU call for issue 4 (docs/results/gpu-capacity/): four PyTorch adversarial-training arms side
# by side on one GPU (scripts/bench/torch_fmnist_capacity.py), and a check that burn's CUDA path
# trains under L2 as well as L∞, beside Warden's CPU engine on the same data.
#
# Usage: bash scripts/bench/gpu-capacity.sh WARDEN_CUDA_BINARY OUT_DIR [BUDGET_SECONDS]
# Needs: PyTorch with CUDA, the NVIDIA driver and NVRTC, Fashion-MNIST in $WARDEN_FASHION_MNIST.
# Writes into OUT_DIR: one ARM.safetensors per arm, and results.tar.gz with each arm's arch.json,
# summary.json and log, and the burn check's logs and model cards.
set -uo pipefail
cd "$(dirname "$0")/../.."
bin=$1
out=$2
budget=${3:-330}
work=$(mktemp -d)
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$work/gpu.txt" 2>&1

# The four arms start together; each picks its epoch count from its own measured speed.
arm() {
  local name=$1
  shift
  python3 -u scripts/bench/torch_fmnist_capacity.py "$work/$name" --budget "$budget" "$@" \
    > "$work/$name.log" 2>&1
  echo "$name: exit $?" >> "$work/exits.txt"
}
arm wk-wide-pgd10 --arch wk-wide --method pgd --lr 2e-3 &
arm vgg-fm-pgd10 --arch vgg-fm --method pgd &
arm vgg-l-pgd10 --arch vgg-l --method pgd &
arm vgg-l-trades --arch vgg-l --method trades &

# burn's CUDA path under both norms, and the CPU engine on the same recipe (the same binary).
(
  . scripts/cuda-libs.sh
  common=(harden train --arch small-cnn --method pgd --pgd-steps 3 --epochs 2 --limit 12800 --threads 4)
  for dev in cuda cpu; do
    "$bin" "${common[@]}" --device "$dev" --norm l2 --eps 1 --pgd-step 0.25 -o "$work/burn-l2-$dev"
    echo "l2 $dev: exit $?"
    "$bin" "${common[@]}" --device "$dev" --eps 0.1 --pgd-step 0.04 -o "$work/burn-linf-$dev"
    echo "linf $dev: exit $?"
  done
) > "$work/burn.log" 2>&1 &

wait
grep -h RESULT "$work"/*.log
cat "$work/exits.txt"
grep -E '^(epoch [0-9]+:|wrote|l2 |linf )' "$work/burn.log"
for n in wk-wide-pgd10 vgg-fm-pgd10 vgg-l-pgd10 vgg-l-trades; do
  [ -f "$work/$n/model.safetensors" ] && mv "$work/$n/model.safetensors" "$out/$n.safetensors"
done
tar -C "$work" -czf "$out/results.tar.gz" .
ls -la "$out"
