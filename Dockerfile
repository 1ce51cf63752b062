# syntax=docker/dockerfile:1
# One image for every roar role: the entrypoint is the `roar` binary and the role is the command
# (`orchestrator`, `projector`, `processor probe`, `topics`, ...). See compose/ and k8s/.
#
#   docker build -t roar:dev .
#
# GPU image (candle's CUDA backend, cargo feature `cuda`). The builder needs the CUDA toolkit
# *and* a Rust toolchain, and the runtime the CUDA runtime libraries of the same release and
# distribution, e.g. a Rust toolchain added to nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04 for
# the builder and nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 for the runtime:
#
#   docker build -t roar:dev-cuda --build-arg FEATURES=cuda \
#     --build-arg BUILDER_IMAGE=<cuda devel image with cargo> \
#     --build-arg RUNTIME_IMAGE=<matching cuda runtime image> .
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS builder
# Comma-separated cargo features of the `roar` package; `cuda` for GPU images.
ARG FEATURES=""
WORKDIR /src
COPY . .
# librdkafka is built from source by rdkafka-sys (make, a C/C++ compiler, OpenSSL's headers
# and pkg-config, all in the rust image); the caches keep the registry and the target dir between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin roar ${FEATURES:+--features "$FEATURES"} \
    && install -m 0755 target/release/roar /usr/local/bin/roar

FROM ${RUNTIME_IMAGE}
# ca-certificates for https S3 endpoints; curl only for container healthchecks; zlib for
# librdkafka's compression; libssl3 for its TLS and SASL/SCRAM (kafka.security.*).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl zlib1g libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/roar roar \
    && mkdir -p /var/lib/roar/models /var/lib/roar/store \
    && chown -R roar:roar /var/lib/roar
COPY --from=builder /usr/local/bin/roar /usr/local/bin/roar
USER 10001
WORKDIR /var/lib/roar
# Container defaults; everything else comes from ROAR_<SECTION>__<KEY> at run time.
# The models directory is a mount point for the weights volume (compose/README.md). The API
# serves /health and /ready on 8080 and /metrics (with /health, /ready) on 9180, the projector
# on 9181, a processor on 9182, the pipelines' process manager on 9183, the webhook dispatcher
# on 9184.
ENV ROAR_HTTP__ADDR=0.0.0.0:8080 \
    ROAR_HTTP__METRICS_ADDR=0.0.0.0:9180 \
    ROAR_PROJECTOR__OPS_ADDR=0.0.0.0:9181 \
    ROAR_PROCESSOR__OPS_ADDR=0.0.0.0:9182 \
    ROAR_PIPELINE__OPS_ADDR=0.0.0.0:9183 \
    ROAR_WEBHOOKS__OPS_ADDR=0.0.0.0:9184 \
    ROAR_TELEMETRY__LOG_FORMAT=json \
    ROAR_PROCESSOR__MODELS_DIR=/var/lib/roar/models \
    ROAR_STORAGE__URL=file:///var/lib/roar/store
EXPOSE 8080 9180 9181 9182 9183 9184
ENTRYPOINT ["roar"]
CMD ["--help"]
