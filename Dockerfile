# dockmoat sidecar image.
#
#   docker build -t dockmoat .
#   docker buildx build --platform linux/amd64,linux/arm64 -t dockmoat .
#
# BUILDER is the Go toolchain image and BASE the runtime's source; both
# are pinned by digest (Debian 13.7 "trixie", the current stable, and Go
# 1.26.5 on it; the digests are the official images' multi-architecture
# indexes, as docker-library/repo-info lists them) and both can be local
# images (the integration tests build them from debootstrap, offline).
# The runtime carries iptables with both variants (iptables-nft,
# iptables-legacy), ip6tables and nft (Docker 29's nftables backend);
# dockmoat picks what holds Docker's rules at start.
#
# Nothing runs under emulation for arm64: both working stages run on the
# build platform. Go cross-compiles, and deploy/image/slim.sh downloads
# and unpacks the target's iptables and nftables packages (dpkg
# multiarch) rather than running them. Docker 20.10's classic builder
# does not set BUILDPLATFORM: build there with DOCKER_BUILDKIT=1, or pass
# --build-arg BUILDPLATFORM=linux/amd64 (the integration tests do).
ARG BUILDER=golang:1.26-trixie@sha256:4ee9ffa999b4583ce281939cdff828763083610292f252279a0cee77473bd9a7
ARG BASE_NAME=docker.io/library/debian:13.7-slim
ARG BASE_DIGEST=sha256:a99cfc517144bc59b1978475ec53b46ecabec7e43635402ee5b77cc54cd1b20a
ARG BASE=${BASE_NAME}@${BASE_DIGEST}
ARG BUILDPLATFORM

FROM --platform=${BUILDPLATFORM} ${BUILDER} AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
# TARGETARCH is set by BuildKit; without it, the builder's architecture.
ARG TARGETARCH
# A vendor/ directory in the context is used automatically (offline builds).
RUN CGO_ENABLED=0 GOARCH=${TARGETARCH:-$(go env GOARCH)} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/dockmoat ./cmd/dockmoat

FROM --platform=${BUILDPLATFORM} ${BASE} AS runtime
ARG TARGETARCH
COPY deploy/image/slim.sh /slim.sh
RUN sh /slim.sh /slim ${TARGETARCH}

FROM scratch
# ARGs before the first FROM are seen inside a stage only if declared.
ARG BASE_NAME
ARG BASE_DIGEST
COPY --from=runtime /slim/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ARG VERSION=dev
ARG REVISION=
# CREATED: the build's time in RFC 3339, e.g. --build-arg
# CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) (SOURCE_DATE_EPOCH's for a
# reproducible build).
ARG CREATED=
LABEL org.opencontainers.image.title="dockmoat" \
      org.opencontainers.image.description="Keeps Docker's published ports behind the firewall" \
      org.opencontainers.image.source="https://github.com/dockmoat/dockmoat" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_NAME}" \
      org.opencontainers.image.base.digest="${BASE_DIGEST}"
COPY --from=build /out/dockmoat /usr/local/bin/dockmoat
ENTRYPOINT ["/usr/local/bin/dockmoat"]
CMD ["run"]
