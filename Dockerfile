# syntax=docker/dockerfile:1

# The base images and the cargo profile are build arguments, so a machine without a registry
# can point them at images made locally (`make container-test` does); the defaults are what a
# plain `docker build .` pulls.
ARG BUILD_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# Build: the Rust toolchain image, one binary (release by default: fat LTO, stripped).
FROM ${BUILD_IMAGE} AS build
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

# Run: slim Debian, no toolchain, no sources; state-manager is PID 1.
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home state-manager \
    && mkdir -p /data /etc/state-manager/stacks \
    && chown state-manager:state-manager /data
COPY --from=build /state-manager /usr/local/bin/state-manager
USER 10001:10001
ENV STATE_MANAGER_DATA_DIR=/data \
    STATE_MANAGER_LISTEN=0.0.0.0:8080
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["state-manager", "ctl", "health", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["state-manager"]
CMD ["serve"]
