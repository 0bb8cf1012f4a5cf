# The connector's image: `docker build .` from a clone. No `# syntax=` line: the builder's own
# Dockerfile frontend is enough, and an air-gapped build cannot fetch another one.
#
# Build stage. The tag is pinned so the same commit builds with the same compiler.
FROM rust:1.95.0-slim-bookworm AS builder
# busybox-static: the runtime image's only shell (entrypoint.sh runs under it) and `id`; one
# static file of about 2 MB, no libraries.
RUN apt-get update \
    && apt-get install -y --no-install-recommends busybox-static \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependency layer: the manifests, the workspace's crates (the shared clients and the
# simulators; crates/* are members) and the benches the manifest names, with stub sources.
# Cached until one of them changes, so a change in src/ rebuilds only this crate.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY benches ./benches
# The stream connector: a workspace member, and its settings table feeds this connector's
# `metadata` (the repository's compose file).
COPY arcsight-stream ./arcsight-stream
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin arcsight-incidents \
    && rm -rf src
COPY src ./src
# COPY keeps the sources' times, which may be older than the stubs' build: make them newer so
# cargo rebuilds the crate.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin arcsight-incidents
# The runtime's whole file system: the binary, the shared libraries it links (glibc, as `ldd`
# lists them), the static shell, the CA certificates of the OS store (trusted beside the bundled
# public roots; SSL_CERT_FILE may replace them), an unprivileged user and its home, and /data.
RUN set -eu; \
    r=/rootfs; \
    mkdir -p $r/usr/local/bin $r/bin $r/etc/ssl/certs $r/tmp $r/data $r/home/connector; \
    cp target/release/arcsight-incidents $r/usr/local/bin/; \
    for lib in $(ldd target/release/arcsight-incidents | grep -o '/[^ ]*'); do \
        mkdir -p "$r$(dirname "$lib")"; cp -L "$lib" "$r$lib"; \
    done; \
    cp /bin/busybox $r/bin/busybox; \
    ln -s busybox $r/bin/sh; \
    ln -s busybox $r/bin/id; \
    cp /etc/ssl/certs/ca-certificates.crt $r/etc/ssl/certs/; \
    echo 'root:x:0:0:root:/root:/sbin/nologin' > $r/etc/passwd; \
    echo 'connector:x:10001:10001:connector:/home/connector:/sbin/nologin' >> $r/etc/passwd; \
    echo 'root:x:0:' > $r/etc/group; \
    echo 'connector:x:10001:' >> $r/etc/group; \
    chown 10001:10001 $r/data $r/home/connector; \
    chmod 1777 $r/tmp

# Runtime stage: nothing but the above (about 19 MB). A copy from a stage keeps ownership: the
# data directory (CONNECTOR_SEND_TO_DIRECTORY_PATH) and HOME belong to the connector's user.
FROM scratch
COPY --from=builder /rootfs/ /
COPY entrypoint.sh /entrypoint.sh
LABEL org.opencontainers.image.title="arcsight-incidents" \
      org.opencontainers.image.description="OpenCTI external-import connector for ArcSight ESM cases (drop-in replacement for the Python arcsight-incidents connector)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/arcsight-incidents/arcsight-incidents" \
      org.opencontainers.image.version="0.1.0"
# No MALLOC_* variables: the binary tunes glibc's allocator itself at start-up (one arena, a
# fixed mmap threshold; see src/main.rs), which a MALLOC_* variable set here would override.
ENV PATH=/usr/local/bin:/bin \
    HOME=/home/connector
# The Python image's directory: a config.yml mounted there (as for the Python connector) is read.
WORKDIR /opt/opencti-connector-arcsight-incidents
USER 10001:10001
# Prometheus metrics, /healthz and /readyz (CONNECTOR_METRICS_PORT, when
# CONNECTOR_EXPOSE_METRICS=true). Not published unless the operator says so.
EXPOSE 9095
# Healthy while the process serves /healthz; unhealthy once the platform has been unreachable
# for longer than the connector tolerates (see README). Exits 0 when metrics are off: there is
# then nothing to ask.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/arcsight-incidents", "healthcheck"]
ENTRYPOINT ["/entrypoint.sh"]
