# dockmoat — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need (Debian packages, Docker 29 and 28 built from the
# Go module proxy) and cache it under $(CACHE); nothing touches the machine's own
# firewall: the engines run in network namespaces the tests create.

SHELL        := /bin/bash
CACHE        ?= /var/cache/dockmoat
DOCKER29_VER ?= v2.0.0-beta.24
DOCKER28_VER ?= v28.5.2+incompatible
RUNC_VER     ?= v1.5.2
STATICCHECK  ?= v0.8.2
NFPM         ?= v2.45.2
RELEASE_DIR  ?= dist
ENGINE_BIN   := $(CACHE)/docker29/bin
ENGINE28_BIN := $(CACHE)/docker28/bin
FIREWALLD_DIR := $(CACHE)/firewalld
TOOLS        := $(CACHE)/tools
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOTEST       := go test -count=1

export DOCKMOAT_ENGINES := $(CACHE)

.PHONY: all build test unit integration lint deps engines rootfs demo bench clean release

all: build

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/dockmoat ./cmd/dockmoat

## test: lint, unit tests, then the integration suite on Docker 20.10, 28 and 29.
# The Debian trees the suite boots (rootfs) are fetched in the background
# while the engines compile: debootstrap waits on the network and the
# disk, the compiler on the CPU. A failed prefetch only says so: the
# suite makes what is missing itself.
test: deps
	@set -e; mkdir -p $(CACHE); \
	$(MAKE) --no-print-directory rootfs > $(CACHE)/prefetch.log 2>&1 & bg=$$!; \
	trap 'kill $$bg 2>/dev/null || true' EXIT; \
	$(MAKE) --no-print-directory engines lint unit; \
	if wait $$bg; then cat $(CACHE)/prefetch.log; else echo "rootfs prefetch failed (the suite retries):"; tail -5 $(CACHE)/prefetch.log; fi; \
	$(MAKE) --no-print-directory integration

## rootfs: the integration suite's Debian trees, made once with debootstrap and cached.
rootfs: | deps
	go run ./integration/rootfs/prefetch

unit:
	$(GOTEST) $$(go list ./... | grep -v /integration)

# From a bare machine make test took 46 min on this kind of machine in
# December 2026 (16 before the suite, 31 in it; 28 warm). 65
# min keeps a busy run from timing out inside CI's 90. -parallel 4: the
# beds of a suite spend much of their time waiting for a dropped probe
# or a daemon, so four at once on two cores beat GOMAXPROCS' default two.
integration:
	@if [ "$$(id -u)" != 0 ]; then echo "integration tests need root (namespaces, dockerd)"; fi
	$(GOTEST) -timeout 65m -parallel 4 -v ./integration/... 2>&1 | tee /tmp/dockmoat-integration.log | grep -E '^(=== RUN|\s*--- |PASS|FAIL|ok|panic)|_test.go:' ; exit $${PIPESTATUS[0]}

lint: $(TOOLS)/staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	$(TOOLS)/staticcheck ./...

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK)

## release: static linux/amd64 and linux/arm64 binaries, a .deb and an RPM for each
## (nfpm, from the Go module proxy) and SHA256SUMS, in $(RELEASE_DIR).
release: $(TOOLS)/nfpm
	bash hack/release.sh $(VERSION) $(RELEASE_DIR) $(TOOLS)/nfpm

$(TOOLS)/nfpm:
	GOBIN=$(TOOLS) go install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM)

## deps: Debian packages, only those missing (hack/deps.sh): a command already
## on the PATH counts (Docker CE's dockerd keeps docker.io out), the list is
## printed first, and apt runs with --no-remove (nothing of the host's goes).
deps:
	@bash hack/deps.sh

## engines: Docker 29 and 28 (dockerd, docker-proxy) and runc built from the Go module proxy, cached;
## firewalld unpacked (not installed) for the firewalld beds.
engines: $(ENGINE_BIN)/dockerd $(ENGINE_BIN)/docker-proxy $(ENGINE_BIN)/runc $(ENGINE28_BIN)/dockerd $(FIREWALLD_DIR)/usr/sbin/firewalld $(TOOLS)/promtool

# promtool (tests the shipped alert rules), unpacked from Debian's
# prometheus package and never installed: installing would start a
# Prometheus server on this machine.
$(TOOLS)/promtool: | deps
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; chmod 755 "$$tmp"; cd "$$tmp"; \
	apt-get download prometheus || { apt-get update -qq && apt-get download prometheus; }; \
	dpkg-deb -x prometheus_*.deb x; mkdir -p $(TOOLS); install -m 0755 x/usr/bin/promtool $(TOOLS)/promtool; echo "promtool in $(TOOLS)"

# Debian's firewalld, unpacked and never installed: installing it would
# enable and start the service on this machine (its firewall, not a bed's).
# The beds run it in their own namespaces (integration/testbed/firewalld.go).
$(FIREWALLD_DIR)/usr/sbin/firewalld: | deps
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; chmod 755 "$$tmp"; cd "$$tmp"; \
	apt-get download firewalld python3-firewall || { apt-get update -qq && apt-get download firewalld python3-firewall; }; \
	mkdir -p $(FIREWALLD_DIR).tmp; for d in *.deb; do dpkg-deb -x "$$d" $(FIREWALLD_DIR).tmp; done; \
	rm -rf $(FIREWALLD_DIR); mv $(FIREWALLD_DIR).tmp $(FIREWALLD_DIR); echo "firewalld unpacked into $(FIREWALLD_DIR)"

# The engines are built without symbols or DWARF (-s -w): nothing reads
# them, and linking a 130 MB dockerd without them is faster.
$(ENGINE_BIN)/dockerd:
	GOBIN=$(ENGINE_BIN) GOFLAGS=-mod=mod go install -ldflags="-s -w" github.com/moby/moby/v2/cmd/dockerd@$(DOCKER29_VER)
$(ENGINE_BIN)/docker-proxy:
	GOBIN=$(ENGINE_BIN) GOFLAGS=-mod=mod go install -ldflags="-s -w" github.com/moby/moby/v2/cmd/docker-proxy@$(DOCKER29_VER)
# Docker 28 (the engine most hosts run): github.com/docker/docker has no
# go.mod at v28, but its module source carries vendor.mod/vendor.sum; build
# a writable copy with those as go.mod/go.sum. Both binaries in one step.
$(ENGINE28_BIN)/dockerd:
	@set -e; src=$$(go mod download -json github.com/docker/docker@$(DOCKER28_VER) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$src"; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp -r "$$src"/. "$$tmp"; chmod -R u+w "$$tmp"; cd "$$tmp"; cp vendor.mod go.mod; cp vendor.sum go.sum; \
	echo "building Docker $(DOCKER28_VER) into $(ENGINE28_BIN)"; \
	GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o $(ENGINE28_BIN)/docker-proxy ./cmd/docker-proxy; \
	GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o $(ENGINE28_BIN)/dockerd.tmp ./cmd/dockerd; \
	mv $(ENGINE28_BIN)/dockerd.tmp $(ENGINE28_BIN)/dockerd
# Debian's runc 1.1.5 rejects Docker 29's runtime specs.
$(ENGINE_BIN)/runc: | deps
	GOBIN=$(ENGINE_BIN) CGO_ENABLED=1 go install -tags seccomp -ldflags="-s -w" github.com/opencontainers/runc@$(RUNC_VER)

## demo: a test bed host with its own dockerd; a port closed, then opened by a label.
demo: deps
	go run ./integration/demo

clean:
	rm -rf bin dist

## bench: control-plane cost, allow latency and footprint, next to baselines; writes BENCHMARKS.md.
bench: deps engines
	go run ./bench -out BENCHMARKS.md
