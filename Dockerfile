# syntax=docker/dockerfile:1
#
# Build:  docker build -t synack_exporter:0.1.0 .
# Run:    docker run --rm -p 9215:9215 synack_exporter:0.1.0
#         (no arguments: the embedded default config, modules tcp_halfopen
#         and tcp_connect, listening on :9215)
# Config: docker run --rm -p 9215:9215 -v "$PWD/synack.yml:/etc/synack_exporter/config.yml:ro" \
#           synack_exporter:0.1.0 --config.file=/etc/synack_exporter/config.yml
#
# CI has no Docker engine: it lints this file with .ci/lint_dockerfile.sh
# (hadolint) and runs the same `cargo build --release --locked` natively.

# ---- build ----------------------------------------------------------------
# rust:*-bookworm links against Debian 12's glibc, the same as the runtime
# image below.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own that Docker reuses until
# Cargo.toml or Cargo.lock change: empty stand-ins for the crate's library
# (src/lib.rs) and binary (src/bin/synack_exporter/main.rs) let cargo build every dependency
# without the sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin/synack_exporter \
    && echo 'fn main() {}' > src/bin/synack_exporter/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -r src
# Then the crate itself. COPY keeps the files' modification times, which
# may be older than the stand-ins' build: without the touch, cargo would
# take the crate for up to date and ship the empty stand-in binary.
COPY src ./src
RUN touch src/bin/synack_exporter/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/synack_exporter /out/synack_exporter

# ---- runtime --------------------------------------------------------------
# distroless cc: glibc, libgcc and CA certificates, no shell, no package
# manager. The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="synack_exporter" \
      org.opencontainers.image.description="Prometheus exporter that checks TCP ports with half-open (SYN, SYN-ACK, RST) probes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/synack_exporter /usr/local/bin/synack_exporter
# Numeric, so that Kubernetes' runAsNonRoot can verify it. Half-open probes
# use ordinary sockets: no root and no capability is needed. A module with
# tcp.engine: raw needs CAP_NET_RAW, which Docker gives root alone (see
# docs/deployment.md#capabilities-for-engine-raw).
USER 65532:65532
EXPOSE 9215
# No HEALTHCHECK: distroless has no shell, curl or wget to run one, and the
# exporter has no self-check flag. Use the orchestrator's probes instead:
# HTTP GET /-/healthy (liveness) and /-/ready (readiness) on port 9215, as
# in examples/kubernetes/.
ENTRYPOINT ["/usr/local/bin/synack_exporter"]
