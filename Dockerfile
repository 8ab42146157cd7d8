# syntax=docker/dockerfile:1

# The base images and the cargo profile are build arguments, so a machine without a registry
# can point them at images made locally; the defaults are what a plain `docker build .` pulls.
ARG BUILD_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# Build: the Rust toolchain image, one binary (release by default: fat LTO, stripped).
FROM ${BUILD_IMAGE} AS builder
ARG CARGO_PROFILE=release
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY build ./build
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
COPY examples ./examples
RUN cargo build --profile "$CARGO_PROFILE" --locked --bin state-manager \
    && out="$CARGO_PROFILE" && { [ "$out" != dev ] || out=debug; } \
    && cp "target/$out/state-manager" /state-manager

# What every image runs on: slim Debian, no toolchain, no sources; state-manager is PID 1.
FROM ${RUNTIME_IMAGE} AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home state-manager \
    && mkdir -p /data /etc/state-manager/stacks \
    && chown state-manager:state-manager /data
USER 10001:10001
ENV STATE_MANAGER_DATA_DIR=/data \
    STATE_MANAGER_LISTEN=0.0.0.0:8080
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["state-manager", "ctl", "health", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["state-manager"]
CMD ["serve"]

# A binary built outside the image (built for Debian 12's glibc or older), from a context that
# holds it: `--target runtime --build-arg PREBUILT=state-manager`. `make container-test` builds
# this one from the host's target/ (docs/CONTAINERS.md).
FROM base AS runtime
ARG PREBUILT=state-manager
COPY --chmod=0755 ${PREBUILT} /usr/local/bin/state-manager

# The image `docker build .` makes: the binary of the builder stage.
FROM base AS image
COPY --from=builder /state-manager /usr/local/bin/state-manager
