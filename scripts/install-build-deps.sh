#!/usr/bin/env bash
# What building roar needs beyond the Rust toolchain and a C compiler: librdkafka (built by
# rdkafka-sys) links the system OpenSSL for TLS and SASL/SCRAM to the broker, found through
# pkg-config; the `openssl` command makes the certificates of the broker TLS test. Seconds when
# present, one apt-get otherwise.
set -euo pipefail
missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
