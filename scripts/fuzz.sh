#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: SECONDS each (default 60). Needs a nightly toolchain and
# cargo-fuzz (installed from crates.io when missing). New inputs go to temporary corpora seeded from
# the committed ones, so the work tree stays clean.
#   warden-risk    check_register    register reader, checker and reports never panic
#   warden-ledger  canonical_record  the canonical record encoding is a fixed point
#   warden-harden  onnx_import       the ONNX importer never panics; what it accepts exports and
#                                    imports back bit for bit
#   warden-harden  safetensors       the weight reader never panics; what it accepts writes back
#                                    and reads to the same bits
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
# Probe output is captured, not sent to /dev/null: where /dev/null is a regular file, cargo's rustc
# probe would read it back as source (see dev_null in .ci/run).
if ! probe=$(rustup run nightly rustc --version 2>&1); then
  echo "fuzz: no nightly toolchain here; the property and hostile-input tests still ran"
  exit 0
fi
if ! probe=$(cargo fuzz --version 2>&1); then
  cargo install cargo-fuzz --locked --quiet
fi
for target in warden-risk:check_register warden-ledger:canonical_record \
  warden-harden:onnx_import warden-harden:safetensors; do
  crate=${target%%:*}
  name=${target##*:}
  corpus=$(mktemp -d)
  cp "crates/$crate/fuzz/corpus/$name/"* "$corpus"/
  echo "fuzz: $crate $name for ${seconds}s"
  (cd "crates/$crate" && cargo +nightly fuzz run "$name" "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 2>&1 | tail -n 3)
  rm -rf "$corpus"
done
