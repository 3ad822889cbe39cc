#!/usr/bin/env bash
# The GPU check of the layers that torchvision's models brought in (padded max pools, grouped and
# depthwise convolutions, ReLU6, residual graphs imported from ONNX) and of colour input, on burn's
# CUDA backend, against Warden's CPU engine on every core of the same machine:
#   1. torchvision's resnet18 and mobilenet_v2 (num_classes=10, 3 x 64 x 64, COUNT images of the
#      formula in scripts/reference/make_onnx_torchvision_fixture.py), exported by the PyTorch of
#      the GPU machine; `harden eval` with --device cuda and --device cpu, the same protocol: the
#      two reports must agree;
#   2. PyTorch's own time for the same PGD-10 on the same models and images, on the same GPU;
#   3. `harden train --device cuda` and `--device cpu` of the MobileNet-parts colour network of
#      docs/results/torchvision-import/ (groups, depthwise, ReLU6, padded pool) on its colour task;
#      each model scored by the CPU engine on the task's test set.
#
# Usage: bash scripts/gpu-imported.sh WARDEN_CUDA_BINARY OUT_DIR [COUNT]
# Writes OUT_DIR/gpu-imported.tar.gz (reports, logs, gpu.txt) and prints a summary.
# Needs: the NVIDIA driver and NVRTC, python3 with torch, torchvision and onnx.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
final=$(realpath -m "$2")
count=${3:-64}
mkdir -p "$final"
out=$(mktemp -d)
. scripts/cuda-libs.sh
threads=$(nproc)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)' >> "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }

protocol=(--eps 0,0.002,0.005 --pgd-steps 10 --pgd-step 0.001 --restarts 1 --apgd-iters 10
  --severities 1 --threads "$threads")
for model in resnet18 mobilenet-v2; do
  dir=$out/$model
  mkdir -p "$dir"
  python3 scripts/reference/make_onnx_torchvision_fixture.py "--$model" "$dir" --count "$count" \
    > "$dir/make.log" 2>&1 || { stamp "$model: export failed"; tail -5 "$dir/make.log"; continue; }
  stamp "$model: $(tail -1 "$dir/make.log" | cut -c1-120)"
  for dev in cuda cpu; do
    s=$(date +%s%N)
    timeout 150 "$bin" harden eval "$dir/$model.onnx" --test-images "$dir/images.idx" \
      --test-labels "$dir/labels.idx" "${protocol[@]}" --device "$dev" \
      -o "$out/$model-$dev.json" --md "$out/$model-$dev.md" > "$out/$model-$dev.log" 2>&1
    rc=$?
    stamp "$model $dev: exit $rc, $((($(date +%s%N) - s) / 1000000)) ms: $(tail -1 "$out/$model-$dev.log" | cut -c1-160)"
  done
  rm -f "$dir/$model.onnx"
done

stamp "PyTorch PGD-10 on the same models and images"
python3 - "$out" "$count" > "$out/torch-pgd.log" 2>&1 <<'EOF'
import sys, time, torch
from torchvision.models import mobilenet_v2, resnet18
out, count = sys.argv[1], int(sys.argv[2])
def pixels(n, c, h, w):
    i = torch.arange(n).view(n, 1, 1, 1); ch = torch.arange(c).view(1, c, 1, 1)
    y = torch.arange(h).view(1, 1, h, 1); x = torch.arange(w).view(1, 1, 1, w)
    return ((37 * i + 11 * ch + 5 * y * y + 3 * x + 7 * x * y) % 256).float() / 255
for name, build in [("resnet18", resnet18), ("mobilenet-v2", mobilenet_v2)]:
    for dev in ["cuda", "cpu"]:
        net = build(num_classes=10).to(dev).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        x = pixels(count, 3, 64, 64).to(dev)
        y = net(x).argmax(1)
        def pgd():
            d = torch.zeros_like(x, requires_grad=True)
            for _ in range(10):
                loss = torch.nn.functional.cross_entropy(net(x + d), y)
                g, = torch.autograd.grad(loss, d)
                d = (d + 0.001 * g.sign()).clamp(-0.005, 0.005)
                d = ((x + d).clamp(0, 1) - x).detach().requires_grad_(True)
            return d
        pgd()
        if dev == "cuda": torch.cuda.synchronize()
        s = time.perf_counter(); pgd()
        if dev == "cuda": torch.cuda.synchronize()
        t = time.perf_counter() - s
        print(f"{name} {dev}: PGD-10 on {count} images: {t:.3f} s, {count / t:.1f} images/s")
EOF
cat "$out/torch-pgd.log"

stamp "training the MobileNet-parts colour network"
task=$out/task
mkdir -p "$task"
(cd "$task" && python3 "$OLDPWD/docs/results/torchvision-import/colour_task.py")
for dev in cuda cpu; do
  s=$(date +%s%N)
  timeout 120 "$bin" harden train --arch docs/results/torchvision-import/colour-mobile-arch.json \
    --train-images "$task/train-images.idx" --train-labels "$task/train-labels.idx" \
    --method pgd --eps 0.03 --pgd-steps 3 --pgd-step 0.012 --epochs 5 --batch 32 \
    --val-per-class 30 --device "$dev" --threads "$threads" -o "$task/m-$dev" > "$out/train-$dev.log" 2>&1
  stamp "train $dev: exit $?, $((($(date +%s%N) - s) / 1000000)) ms: $(grep -E '^epoch' "$out/train-$dev.log" | tail -1)"
  timeout 60 "$bin" harden eval "$task/m-$dev" --test-images "$task/test-images.idx" \
    --test-labels "$task/test-labels.idx" --eps 0.03 --severities 0 --threads "$threads" \
    -o "$out/colour-$dev.json" > "$out/colour-eval-$dev.log" 2>&1
  stamp "eval of the $dev-trained model (CPU engine): $(tail -1 "$out/colour-eval-$dev.log" | cut -c1-160)"
  cp "$task/m-$dev/model-card.json" "$out/colour-$dev-model-card.json" 2>/dev/null
done
rm -rf "$task"
tar -C "$out" -czf "$final/gpu-imported.tar.gz" .
stamp "done"
