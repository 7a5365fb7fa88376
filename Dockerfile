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

# The runtime: iptables (both variants) and nft, installed on the base,
# then copied alone into /slim with the libraries the loader resolves for
# them (ldd), iptables' extension modules, the files they read and dpkg's
# status (for image scanners): no shell, no package manager, no
# coreutils. Every iptables and ip6tables name of both variants points at
# its multi-call binary, as Debian's alternatives do.
FROM ${BASE} AS runtime
RUN set -e; \
    if ! command -v iptables-legacy >/dev/null || ! command -v iptables-nft >/dev/null || ! command -v nft >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends iptables nftables; \
    fi; \
    xt=$(dirname "$(find /usr/lib -name libxt_comment.so | head -n1)"); \
    bins="/usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi /usr/sbin/nft"; \
    mkdir -p /slim/usr/sbin /slim/etc /slim/tmp /slim/run /slim/var/lib/dpkg "/slim$xt"; \
    cp -a $bins /slim/usr/sbin/; \
    cp -a "$xt/." "/slim$xt/"; \
    for f in $bins "$xt"/*.so; do ldd "$f" 2>/dev/null; done | \
      awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u | \
      while read -r lib; do cp -L --parents "$lib" /slim; done; \
    for n in iptables ip6tables; do \
      for s in "" -save -restore; do \
        ln -s xtables-nft-multi "/slim/usr/sbin/$n$s"; \
        ln -s xtables-nft-multi "/slim/usr/sbin/$n-nft$s"; \
        ln -s xtables-legacy-multi "/slim/usr/sbin/$n-legacy$s"; \
      done; \
    done; \
    cp -a /etc/ld.so.cache /etc/protocols /etc/services /etc/ethertypes /etc/nsswitch.conf /etc/passwd /etc/group /slim/etc/ 2>/dev/null || true; \
    cp -a /var/lib/dpkg/status /slim/var/lib/dpkg/; \
    chmod 1777 /slim/tmp

FROM scratch
# BASE again, for the label: an ARG before the first FROM is not seen
# inside a stage unless declared there.
ARG BASE
COPY --from=runtime /slim/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ARG VERSION=dev
ARG REVISION=
LABEL org.opencontainers.image.title="dockmoat" \
      org.opencontainers.image.description="Keeps Docker's published ports behind the firewall" \
      org.opencontainers.image.source="https://github.com/dockmoat/dockmoat" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE}"
COPY --from=build /out/dockmoat /usr/local/bin/dockmoat
ENTRYPOINT ["/usr/local/bin/dockmoat"]
CMD ["run"]
