# syntax=docker/dockerfile:1
# One image for the lab's binaries: /usr/local/bin/consumer (default), scaler, generator and lab.
#   docker build -t autoscaling-lab:dev .
#   docker run --rm -p 8080:8080 autoscaling-lab:dev                       # the consumer
#   docker run --rm autoscaling-lab:dev /usr/local/bin/generator --help    # any of them by command
# Dependencies are compiled in their own layer (cargo-chef), so a source change rebuilds only the workspace crates.

ARG RUST_VERSION=1.95

# The console's page (TypeScript + Vite, console/): built from the committed lockfile; the lab embeds console/dist.
FROM node:20-bookworm-slim AS console
WORKDIR /console
COPY console/package.json console/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY console/ ./
RUN npm run build

FROM rust:${RUST_VERSION}-bookworm AS chef
# Pinned so the recipe format and the cached layers stay stable.
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

# The recipe: the workspace's manifests and lockfile only, so it changes only when dependencies change.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# lab/build.rs refuses to build without the page (it never embeds a placeholder).
COPY --from=console /console/dist console/dist
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
COPY --from=console /console/dist console/dist
RUN cargo build --release --locked --package consumer --package scaler --package generator --package lab \
    && mkdir -p /out \
    && cp target/release/consumer target/release/scaler target/release/generator target/release/lab /out/

# Runtime: glibc and libgcc only (no shell, no package manager), as the distroless "nonroot" user.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="autoscaling-lab" \
      org.opencontainers.image.description="KEDA/HPA autoscaling lab: consumer, scaler, generator and lab" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/consumer /out/scaler /out/generator /out/lab /usr/local/bin/
# `lab` reads the ScaledObject from here when run from /app.
COPY manifests/components/keda/scaledobject.yaml /app/manifests/components/keda/scaledobject.yaml
WORKDIR /app
USER 65532:65532
# consumer http, scaler grpc and http, generator metrics, the lab's console
EXPOSE 8080 6000 6001 9464 8089
ENTRYPOINT []
CMD ["/usr/local/bin/consumer"]
