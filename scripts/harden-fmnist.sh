#!/usr/bin/env bash
# Warden's hardening pipeline end to end on Fashion-MNIST: train a baseline, train a hardened model,
# evaluate both under attack (FGSM, PGD, APGD-CE, APGD-DLR) and under distribution shift, write the
# report (JSON, Markdown, and an HTML page with the robustness curve) and record it in the ledger as
# evidence.
#
# Usage: bash scripts/harden-fmnist.sh [quick|full] [OUT_DIR]
#   quick  a few minutes on 2 cores (the quickstart and CI): 2 epochs each, 1,000 test images,
#          shorter attacks. The figures show the pipeline works; they are not the acceptance figures.
#   full   the BENCHMARKS.md run (about 17 minutes on 2 cores): wk-wide, clean training and 26
#          epochs of PGD-7 training (12 minutes), and the full 10,000-image test set at eps 0.1 with
#          PGD-50 (step 0.01, 5 restarts) and APGD-CE + APGD-DLR (100 iterations, 1 restart).
# The ledger is $WARDEN_LEDGER when set, otherwise a new one in OUT_DIR/ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-quick}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ -z "${WARDEN_FASHION_MNIST:-}" ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq dataset-fashion-mnist
fi
cargo build --release --quiet -p warden
warden=$PWD/target/release/warden

case $profile in
quick)
  base=(--epochs 2)
  hard=(--method pgd --pgd-steps 3 --pgd-step 0.04 --epochs 2 --eps-warmup 1)
  eval=(--limit 1000 --eps 0.05,0.1 --pgd-steps 20 --restarts 1 --apgd-iters 25 --severities 3)
  ;;
full)
  base=(--arch wk-wide --epochs 10)
  hard=(--arch wk-wide --method pgd --pgd-steps 7 --pgd-step 0.025 --epochs 26 --eps-warmup 4 --lr 2e-3)
  eval=(--eps 0.1 --pgd-steps 50 --pgd-step 0.01 --restarts 5 --apgd-iters 100 --apgd-restarts 1)
  ;;
*)
  echo "usage: $0 [quick|full] [OUT_DIR]" >&2
  exit 2
  ;;
esac

if [ -z "${WARDEN_LEDGER:-}" ]; then
  export WARDEN_LEDGER=$out/ledger
  $warden ledger init --origin warden.example/harden > "$out/verifier.key"
fi

echo "== train: a baseline (clean) and a hardened model (adversarial training), in $out"
time $warden harden train --method clean "${base[@]}" -o "$out/baseline"
time $warden harden train --eps 0.1 "${hard[@]}" -o "$out/hardened"

echo "== eval: both models under attack and shift; the report is recorded in the ledger"
time $warden harden eval "$out/hardened" --baseline "$out/baseline" "${eval[@]}" \
  -o "$out/robustness.json" --md "$out/robustness.md" --html "$out/robustness.html" --record
sed -n '1,25p' "$out/robustness.md"
echo "harden: ok (models, report and ledger in $out)"
