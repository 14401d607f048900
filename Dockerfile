# Policy Mesh: build the binary with the Rust toolchain, run it on Debian slim.
#   docker build -t policy-mesh .
#   docker run -p 127.0.0.1:8000:8000 -e ALLOW_UNAUTHENTICATED=true policy-mesh
# Without client keys the gateway refuses to listen on 0.0.0.0 unless
# ALLOW_UNAUTHENTICATED=true; to serve others, mount a clients file and set
# CLIENTS_FILE (policy-mesh keys new makes keys).

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin policy-mesh

FROM debian:bookworm-slim
# ca-certificates: the public providers are reached over TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home policy-mesh
WORKDIR /app
COPY --from=builder /src/target/release/policy-mesh /usr/local/bin/policy-mesh
COPY --chown=policy-mesh:policy-mesh policies/ /app/policies/
COPY --chown=policy-mesh:policy-mesh schema/ /app/schema/
# The default SQLite audit store lives in /app/data; with Postgres it stays empty.
RUN mkdir -p /app/data && chown policy-mesh:policy-mesh /app/data
USER policy-mesh
ENV BIND_ADDR=0.0.0.0:8000 \
    POLICY_DIR=/app/policies
EXPOSE 8000
ENTRYPOINT ["policy-mesh"]
CMD ["serve"]
