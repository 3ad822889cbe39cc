#!/usr/bin/env bash
# Warden's main job end to end on the embedded defaults: create a ledger; harden a Fashion-MNIST
# model (train a baseline and an adversarially trained model, evaluate both under attack and shift,
# record the robustness report as evidence: scripts/harden-fmnist.sh, quick profile); record the rest
# of the model's life (a release gate on the report's figures, monitor decisions, an escalation, a
# human review, a containment); sign a checkpoint, prove inclusion and consistency, verify
# everything, and check it again with the independent auditor script.
# Usage: bash scripts/quickstart.sh [LEDGER_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p warden
warden=target/release/warden
dir=${1:-$(mktemp -d)/ledger}
export WARDEN_LEDGER=$dir
out=$(dirname "$dir")

echo "== init: a new ledger and its signing key in $dir"
$warden ledger init --origin warden.example/quickstart | tee "$out/verifier.key"

echo "== harden: baseline and hardened models, evaluated; the report goes into the ledger (record 0)"
bash scripts/harden-fmnist.sh quick "$out/harden"
model=sha256:$(sha256sum "$out/harden/hardened/model.safetensors" | cut -d' ' -f1)
robust=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["headline"]["robust_accuracy"])' "$out/harden/robustness.json")
passed=$(python3 -c 'import sys; print("true" if float(sys.argv[1]) >= 0.5 else "false")' "$robust")

echo "== append: the rest of the model's life, one record at a time and as JSON Lines"
$warden ledger append --kind gate --actor gate:release --subject model=$model \
  --payload "{\"passed\":$passed,\"policy\":\"robust_accuracy >= 0.50 (quick profile)\",\"robust_accuracy\":$robust,\"evidence\":0}"
for i in $(seq 1 1000); do
  req=$(printf '%064x' "$i")
  verdict=allow; [ $((i % 97)) -eq 0 ] && verdict=flag
  echo "{\"kind\":\"decision\",\"actor\":\"monitor:fmnist-cnn-v3\",\"subjects\":[{\"name\":\"model\",\"digest\":\"$model\"},{\"name\":\"request\",\"digest\":\"sha256:$req\"}],\"payload\":{\"verdict\":\"$verdict\",\"score\":0.$((i % 10))}}"
done | $warden ledger append
$warden ledger append --kind escalation --actor monitor:fmnist-cnn-v3 --payload '{"reason":"mahalanobis score above threshold","queue":"review"}'
$warden ledger append --kind review --actor user:alice --payload '{"decision":"deny","escalation":1002}'
$warden ledger append --kind containment --actor user:alice --subject model=$model --payload '{"action":"quarantine","client":"c-17"}'

echo "== checkpoint: the signed tree head an auditor keeps"
$warden ledger checkpoint | tee "$out/checkpoint.txt"

echo "== get / prove: record 1002 (the escalation), and consistency with an early tree"
$warden ledger get --index 1002
$warden ledger prove --index 1002 > "$out/inclusion.json"
$warden ledger prove --from 2 --to 1005 > "$out/consistency.json"
cat "$out/inclusion.json"

echo "== verify: every record and hash re-derived, checked against the pinned key and checkpoint"
$warden ledger verify --key "$(cat "$out/verifier.key")" --checkpoint "$out/checkpoint.txt"

echo "== audit: the same checks by an independent Python implementation, from the export"
$warden ledger export > "$out/export.jsonl"
python3 scripts/audit.py root --export "$out/export.jsonl" --checkpoint "$out/checkpoint.txt"
python3 scripts/audit.py inclusion "$out/inclusion.json"
python3 scripts/audit.py consistency "$out/consistency.json"
echo "quickstart: ok (ledger in $dir)"
