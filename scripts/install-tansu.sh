#!/usr/bin/env bash
# Installs the tansu broker (Kafka API, no JVM) once, into $CARGO_HOME/roar/tansu-<version>-<features>.
# One build serves everything: the in-memory engine the tests run on and the PostgreSQL engine
# `roar dev` keeps its broker log in (schema `tansu` of the database it already runs). The
# PostgreSQL engine adds 17 small Rust crates to the in-memory build's 395 (tokio-postgres and
# its protocol crates, deadpool-postgres, x509 parsing; no C library, no bindgen).
#
#   scripts/install-tansu.sh     # scripts/test.sh runs it; `roar dev` runs the same install when it is missing
#
# Keep the version and features in step with `TansuFlavor` in src/stack.rs.
set -euo pipefail
if [ $# -gt 0 ]; then
  echo "usage: $0 (no arguments: one build serves the tests and roar dev)" >&2
  exit 2
fi
version=0.6.0
features=dynostore,postgres
cargo_home=${CARGO_HOME:-$HOME/.cargo}
root="$cargo_home/roar/tansu-$version-${features//,/-}"
[ -x "$root/bin/tansu" ] && exit 0
echo "installing tansu $version with $features into $root (once)…" >&2
cargo install tansu --locked --version "$version" --features "$features" --root "$root"
