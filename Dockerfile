# syntax=docker/dockerfile:1
# Latchkey's image: built in the Rust image, run on distroless (glibc and CA roots, no shell,
# no package manager) as the non-root user 65532. From the repository root:
#   docker build -t ghcr.io/latchkey/latchkey:0.1.0 .
# The chart runs it with `run` and a read-only root filesystem.

FROM docker.io/library/rust:1.95-bookworm AS build
# aws-lc-sys (the one crypto provider) builds its C sources with cc and cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p latchkey \
 && install -D -m 0755 target/release/latchkey /out/latchkey

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/latchkey /usr/local/bin/latchkey
USER 65532:65532
# 9095: token endpoint, JWKS, discovery. 9096: /healthz, /readyz, /metrics.
EXPOSE 9095 9096
ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["run"]
