#!/usr/bin/env bash
# Installs the tansu broker (Kafka API, no JVM) that `roar dev` and the tests run, once.
# Skips when a tansu binary is already on PATH or in ~/.cargo/bin.
set -euo pipefail
if command -v tansu >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  exit 0
fi
echo "installing tansu 0.6.0 (about 15 minutes on 2 cores, once)…" >&2
cargo install tansu --locked --version 0.6.0 --features dynostore,libsql
