# dockmoat sidecar image.
#
#   docker build -t dockmoat .
#
# BUILDER is the Go toolchain image and BASE the runtime; both can be local
# images (the integration tests build them from debootstrap, offline). The
# runtime carries iptables with both variants (iptables-nft, iptables-legacy),
# ip6tables and nft (Docker 29's nftables backend); dockmoat picks what holds
# Docker's rules at start.
ARG BUILDER=golang:1.26-bookworm
ARG BASE=debian:bookworm-slim

FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
# A vendor/ directory in the context is used automatically (offline builds).
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/dockmoat ./cmd/dockmoat

FROM ${BASE}
RUN if ! command -v iptables-legacy >/dev/null || ! command -v iptables-nft >/dev/null || ! command -v nft >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends iptables nftables && rm -rf /var/lib/apt/lists/*; \
    fi
ARG VERSION=dev
ARG REVISION=
LABEL org.opencontainers.image.title="dockmoat" \
      org.opencontainers.image.description="Keeps Docker's published ports behind the firewall" \
      org.opencontainers.image.source="https://github.com/dockmoat/dockmoat" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/dockmoat /usr/local/bin/dockmoat
ENTRYPOINT ["/usr/local/bin/dockmoat"]
CMD ["run"]
