# dockmoat sidecar image.
#
#   docker build -t dockmoat .
#   docker buildx build --platform linux/amd64,linux/arm64 -t dockmoat .
#
# BUILDER is the Go toolchain image and BASE the runtime's source; both
# are pinned by digest (Debian 12.15 "bookworm" and Go 1.26.5 on it; the
# digests are the official images' multi-architecture indexes, as
# docker-library/repo-info lists them) and both can be local images (the
# integration tests build them from debootstrap, offline). Not Debian 13:
# a set written by its nft 1.1.3 makes Debian 12's nft 1.0.6 on the host
# crash (SIGSEGV) on `nft -j list` (seen in the test beds), which breaks
# `dockmoat audit` and anything else on the host that lists the ruleset
# as JSON; an older nft in the image is read fine by newer hosts. The runtime carries iptables
# with both variants (iptables-nft, iptables-legacy), ip6tables and nft
# (Docker 29's nftables backend);
# dockmoat picks what holds Docker's rules at start.
#
# Nothing runs under emulation for arm64: both working stages run on the
# build platform. Go cross-compiles, and deploy/image/slim.sh downloads
# and unpacks the target's iptables and nftables packages (dpkg
# multiarch) rather than running them. Docker 20.10's classic builder
# does not set BUILDPLATFORM: build there with DOCKER_BUILDKIT=1, or pass
# --build-arg BUILDPLATFORM=linux/amd64 (the integration tests do).
ARG BUILDER=golang:1.26-bookworm@sha256:551752d3ad9de9923190bf5280500617ed8fee287ffb4b0220e770ef89346258
ARG BASE_NAME=docker.io/library/debian:12.15-slim
ARG BASE_DIGEST=sha256:abd67ffcfa541b485a3dff59865ab629aa048a6c613e639d36e7456b0b229241
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
