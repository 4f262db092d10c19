# Talaria's image: one stateless image, all state in /opt/data.
#
#   docker build -t talaria .
#   docker run -d --name talaria -v talaria-data:/opt/data -p 127.0.0.1:8642:8642 talaria
#
# Build arguments:
#   RUST_IMAGE   the Rust toolchain of the build stage (Debian-based)
#   BASE_IMAGE   the runtime stage's base: `scratch`, since the build stage
#                supplies everything the binary needs (a distribution's
#                image would clash: the tree's /bin and /lib are folders)
#   VERSION      the version label; SOURCE_URL the source label
#
# The runtime stage takes everything from the one tree the build stage
# assembles (`/out`, by `cargo xtask rootfs`): the binary, the bundled
# skills, the C libraries the binary was linked against, a static busybox
# (/bin/sh and the usual tools), the `talaria` user and CA certificates.
# So it can be built from another folder with the same layout: `cargo xtask
# image` and the project's tests do that, where nothing can be pulled.

ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=scratch

# ---- build: the release binary, the skills' components, the tree ----
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox-static binutils ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN rustup target add wasm32-wasip2 \
 && cargo xtask rootfs /out

# ---- runtime: only the tree ----
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.1.0
# Where the source lives, e.g. --build-arg SOURCE_URL=https://git.example.org/talaria
ARG SOURCE_URL=
LABEL org.opencontainers.image.title="Talaria" \
      org.opencontainers.image.description="An AI agent runtime whose skills run as sandboxed WebAssembly components" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/ /

# The data home belongs to the service user (10000:10000, in /etc/passwd
# from the tree); the entrypoint can run it as another uid (TALARIA_UID,
# PUID) without editing those files, so the root file system can stay
# read-only.
RUN mkdir -p /opt/data /tmp \
 && chown 10000:10000 /opt/data \
 && chmod 0700 /opt/data \
 && chmod 1777 /tmp

# TALARIA_CONTAINER=1: a root `docker exec … talaria` acts as the service
# user. The API listens on every interface of the container; publish it on
# the host's loopback (see compose.yaml) unless a TLS proxy fronts it.
ENV TALARIA_HOME=/opt/data \
    TALARIA_CONTAINER=1 \
    TALARIA_API_HOST=0.0.0.0 \
    HOME=/opt/data/home \
    PATH=/usr/local/bin:/usr/bin:/bin

WORKDIR /opt/data
VOLUME /opt/data
EXPOSE 8642 9119
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["talaria", "gateway", "health"]

# Starts as root only to hand /opt/data to the service user and drop root
# for good (README, "Running in Docker"). Arguments replace CMD: a talaria
# subcommand (`chat -q "…"`, `skills audit`) or any program (`sh`).
ENTRYPOINT ["/usr/local/bin/talaria", "container"]
CMD ["gateway", "run"]
