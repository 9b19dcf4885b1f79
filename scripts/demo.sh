#!/usr/bin/env bash
# The main job on the built-in example: installs etcd when missing (the simulated control
# planes run a real one), then `kforge demo` — the solana example on simulated Talos nodes:
# up, health, failover drill, teardown.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh etcd
cargo run --release -p kforge -- demo "$@"
