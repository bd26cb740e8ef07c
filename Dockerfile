# syntax=docker/dockerfile:1
#
# lct container image.
#
#   docker build -t lct:local .
#   docker run --rm -p 8080:8080 lct:local
#
# Stages:
#   chef     - Rust toolchain plus cargo-chef
#   planner  - computes the dependency "recipe" from the Cargo manifests and Cargo.lock
#   builder  - builds the dependencies first (cached as long as the recipe is unchanged),
#              then the workspace itself
#   runtime  - debian:bookworm-slim with the binary, a non-root user and curl for HEALTHCHECK

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
ARG CARGO_CHEF_VERSION=0.1.77
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Dependencies of the server only (not those of the benchmark systems): this layer is reused
# until Cargo.toml/Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json --package lct
COPY . .
RUN cargo build --release --locked --bin lct \
    && install -D -m 0755 target/release/lct /out/lct

FROM debian:${DEBIAN_RELEASE}-slim AS runtime

ARG LCT_UID=10001
ARG LCT_GID=10001

# curl is used by HEALTHCHECK only; ca-certificates for TLS connections to managed services.
# Packages are not version-pinned on purpose so that rebuilds pick up Debian security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${LCT_GID}" lct \
    && useradd --system --uid "${LCT_UID}" --gid lct --home-dir /var/lib/lct \
        --no-create-home --shell /usr/sbin/nologin lct \
    && mkdir -p /var/lib/lct \
    && chown lct:lct /var/lib/lct \
    && chmod 0750 /var/lib/lct

COPY --from=builder /out/lct /usr/local/bin/lct

ENV LCT_LISTEN=0.0.0.0:8080 \
    LCT_DATA_DIR=/var/lib/lct \
    LCT_SHUTDOWN_GRACE=20

# Embedded event store (used when no MongoDB is configured).
VOLUME ["/var/lib/lct"]
WORKDIR /var/lib/lct

# Numeric user so that Kubernetes' runAsNonRoot can verify it.
USER ${LCT_UID}:${LCT_GID}

EXPOSE 8080

# lct drains WebSockets on SIGTERM within LCT_SHUTDOWN_GRACE seconds.
STOPSIGNAL SIGTERM

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--max-time", "2", "http://127.0.0.1:8080/liveness"]

ENTRYPOINT ["/usr/local/bin/lct"]
