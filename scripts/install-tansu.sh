#!/usr/bin/env bash
# Installs the tansu broker (Kafka API, no JVM) once, into $CARGO_HOME/roar/tansu-<version>-<features>.
#
#   scripts/install-tansu.sh memory    # in-memory storage only: what the tests need (~12 min on 2 cores)
#   scripts/install-tansu.sh durable   # adds SQLite storage: what `roar dev` needs (~25 min on 2 cores)
#
# `roar dev` runs the durable install itself when it is missing. Keep the version and features in
# step with `TansuFlavor` in src/stack.rs.
set -euo pipefail
version=0.6.0
case "${1:-memory}" in
  memory) features=dynostore ;;
  durable) features=dynostore,libsql ;;
  *) echo "usage: $0 [memory|durable]" >&2; exit 2 ;;
esac
cargo_home=${CARGO_HOME:-$HOME/.cargo}
root="$cargo_home/roar/tansu-$version-${features//,/-}"
durable="$cargo_home/roar/tansu-$version-dynostore-libsql"
if [ -x "$root/bin/tansu" ] || { [ "${1:-memory}" = memory ] && [ -x "$durable/bin/tansu" ]; }; then
  exit 0
fi
echo "installing tansu $version with $features into $root (once)…" >&2
cargo install tansu --locked --version "$version" --features "$features" --root "$root"
