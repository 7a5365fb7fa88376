# dockmoat sidecar image.
#
#   docker build -t dockmoat .
#
# BUILDER is the Go toolchain image and BASE the runtime; both can be local
# images (the integration tests build them from debootstrap, offline). The
# runtime carries iptables with both variants (iptables-nft, iptables-legacy),
# ip6tables and nft (Docker 29's nftables backend); dockmoat picks what holds
# Docker's rules at start. Both architectures:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t dockmoat .
ARG BUILDER=golang:1.26-bookworm
ARG BASE=debian:bookworm-slim

FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
# TARGETARCH is set by BuildKit (docker buildx build --platform
# linux/amd64,linux/arm64); without it, the builder's own architecture.
# No --platform=$BUILDPLATFORM on this stage: Docker 20.10's classic
# builder cannot parse it empty, so under buildx the arm64 stage runs
# emulated (CGO_ENABLED=0 keeps that to a plain go build).
ARG TARGETARCH
# A vendor/ directory in the context is used automatically (offline builds).
RUN CGO_ENABLED=0 GOARCH=${TARGETARCH:-$(go env GOARCH)} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/dockmoat ./cmd/dockmoat

# The runtime: iptables (both variants) and nft, then everything a
# firewall tool never reads (apt lists and caches, docs, man pages,
# locales) removed, and the result flattened into one layer so the removal
# counts. dpkg's database stays, for image scanners.
FROM ${BASE} AS runtime
RUN set -e; \
    if ! command -v iptables-legacy >/dev/null || ! command -v iptables-nft >/dev/null || ! command -v nft >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends iptables nftables; \
    fi; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/* \
      /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/*

FROM scratch
COPY --from=runtime / /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
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
