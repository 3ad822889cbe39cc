#!/usr/bin/env bash
# Fuzzes the risk-register reader (parse, decode, check, render) for a bounded time: SECONDS (default 60).
# Needs a nightly toolchain and cargo-fuzz; installs cargo-fuzz from crates.io when it is missing.
# New inputs go to a temporary corpus, seeded from the committed one, so the work tree stays clean.
set -euo pipefail
cd "$(dirname "$0")/../crates/warden-risk"
seconds=${1:-60}
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain here; the hostile-input tests of crates/warden-risk/tests/hostile.rs still ran"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
corpus=$(mktemp -d)
cp fuzz/corpus/check_register/* "$corpus"/
cargo +nightly fuzz run check_register "$corpus" -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 2>&1 | tail -n 5
rm -rf "$corpus"
