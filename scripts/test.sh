#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
# pip may install console scripts where a fresh shell would not look.
export PATH="$PATH:$HOME/.local/bin:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
cargo nextest run --workspace --no-fail-fast "$@"
cargo test --workspace --doc --quiet
