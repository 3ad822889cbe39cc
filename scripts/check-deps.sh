#!/usr/bin/env bash
# The dependency rules of ARCHITECTURE.md, checked on the resolved graph: domain crates know nothing
# of SQL, HTTP or async runtimes, and nothing depends upward.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

deps() { cargo tree -p "$1" -e normal --prefix none --format '{p}' | cut -d' ' -f1 | sort -u; }

forbid() { # crate, forbidden dependency...
  local crate=$1
  shift
  local have
  have=$(deps "$crate")
  for bad in "$@"; do
    if grep -qx "$bad" <<<"$have"; then
      echo "error: $crate must not depend on $bad"
      cargo tree -p "$crate" -e normal -i "$bad" | head -n 5
      fail=1
    fi
  done
}

io_crates=(rusqlite libsqlite3-sys postgres tokio-postgres sqlx tokio hyper axum reqwest)
forbid warden-ledger "${io_crates[@]}" warden-ledger-sqlite warden
forbid warden-ledger-sqlite tokio hyper axum reqwest warden
# The risk engine is a pure domain crate: no storage, no network, no other pillar.
forbid warden-risk "${io_crates[@]}" warden-ledger warden-ledger-sqlite warden
# The kernels crate is the one place with unsafe code: it depends on nothing of Warden.
forbid warden-gemm "${io_crates[@]}" warden-ledger warden-ledger-sqlite warden-risk warden-harden warden
forbid warden-harden "${io_crates[@]}" warden-ledger warden-ledger-sqlite warden-risk warden burn
# burn stays behind warden-burn: the CPU engine and the default CLI build do not pull it in.
forbid warden-burn "${io_crates[@]}" warden-ledger warden-ledger-sqlite warden-risk warden-monitor warden
if cargo tree -p warden -e normal --prefix none --format '{p}' | cut -d' ' -f1 | grep -qx burn; then
  echo "error: the default warden build must not depend on burn (it is behind the burn and cuda features)"
  fail=1
fi
# The monitor's detectors are sans-I/O state machines over vectors: no storage, no network, no
# models (the CLI runs the model and hands the vectors over), no other pillar.
forbid warden-monitor "${io_crates[@]}" warden-ledger warden-ledger-sqlite warden-harden warden-risk warden

if [ "$fail" -ne 0 ]; then
  exit 1
fi
echo "dependency direction: ok"
