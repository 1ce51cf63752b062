#!/usr/bin/env bash
# The static gates CI runs before the tests (.ci/run): formatting, unused dependencies, the
# deployment files, clippy on every target, and the doc tests (nextest does not run those).
# Cheapest first, so a slip fails in seconds; the doc tests build the libraries the test build then reuses.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

for tool in fmt clippy; do
  cargo "$tool" --version >/dev/null 2>&1 || {
    echo "cargo $tool is missing from the Rust toolchain" >&2
    exit 1
  }
done

# OpenSSL headers and pkg-config for librdkafka, before anything compiles it.
scripts/install-build-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

# cargo-machete reads the sources (no build), so it works on stable and takes a second.
if ! command -v cargo-machete >/dev/null 2>&1; then
  cargo install cargo-machete --locked --version 0.9.2
fi
echo "== cargo machete (unused dependencies)"
cargo machete

# The deployment files, offline: k8s schemas, promtool, docker-compose config (its header says
# what it installs: about a minute on a fresh machine, seconds after).
# No module cycles inside a crate (CODE_STYLE.md): reads the sources, under a second.
echo "== module cycles"
python3 scripts/check-module-cycles.py

echo "== deployment files"
scripts/check-deploy.sh

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== doc tests"
cargo test --doc --workspace
