#!/usr/bin/env bash
# release.sh VERSION OUTDIR NFPM: static linux/amd64 and linux/arm64
# (or $ARCHES) binaries carrying VERSION, a .deb and an RPM per architecture (binary, both systemd
# units with the /usr/bin path, example config, license), and SHA256SUMS.
# Offline but for the Go module proxy (nfpm is built from it by make).
set -euo pipefail
version=$1 out=$2 nfpm=$3
cd "$(dirname "$0")/.."

# Debian versions start with a digit: v1.2.3 → 1.2.3; anything else
# (a commit, "dev") → 0.0.0~git<it>, which sorts before every release.
deb_version=${version#v}
if [[ ! $deb_version =~ ^[0-9] ]]; then
	deb_version="0.0.0~git${version//[^A-Za-z0-9.+~]/.}"
fi

# Reproducible: the same commit gives the same bytes (file times in the
# .deb from the commit's time unless SOURCE_DATE_EPOCH says otherwise).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

rm -rf "$out"
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# The units name /usr/local/bin (a hand install); the package puts the
# binary in /usr/bin.
for unit in dockmoat.service dockmoat-guard.service; do
	sed 's#/usr/local/bin/dockmoat#/usr/bin/dockmoat#g' "deploy/$unit" >"$stage/$unit"
done

# The manual pages and the completions, made by a build for this machine
# from the commands and flags themselves (gzip -n: no timestamp).
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$version" -o "$stage/dockmoat-host" ./cmd/dockmoat
"$stage/dockmoat-host" man | gzip -9n >"$stage/dockmoat.8.gz"
"$stage/dockmoat-host" man config | gzip -9n >"$stage/dockmoat.yaml.5.gz"
for shell in bash zsh fish; do
	"$stage/dockmoat-host" completion "$shell" >"$stage/completion.$shell"
done
# A native package's changelog, dated like the files.
{
	echo "dockmoat ($deb_version) unstable; urgency=medium"
	echo
	echo "  * Release $version: https://github.com/dockmoat/dockmoat/releases"
	echo
	echo " -- dockmoat developers <dockmoat@users.noreply.github.com>  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$stage/changelog.gz"

for arch in ${ARCHES:-amd64 arm64}; do
	bin="$out/dockmoat-linux-$arch"
	echo "release: $bin"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X main.version=$version" -o "$bin" ./cmd/dockmoat
	echo "release: .deb for $arch ($deb_version)"
	# nfpm expands the environment in some fields only: fill the recipe.
	sed -e "s#\${DEB_ARCH}#$arch#g" -e "s#\${DEB_VERSION}#$deb_version#g" \
		-e "s#\${BIN}#$bin#g" -e "s#\${STAGE}#$stage#g" deploy/nfpm.yaml >"$stage/nfpm.yaml"
	"$nfpm" package --config "$stage/nfpm.yaml" --packager deb --target "$out/"
	echo "release: RPM for $arch"
	# The RPM header records the build host's name: a fixed one (in a UTS
	# namespace of its own, where user namespaces allow) keeps the bytes
	# the same on every machine.
	rpm_cmd=("$nfpm" package --config "$stage/nfpm.yaml" --packager rpm --target "$out/")
	if unshare -ru true 2>/dev/null; then
		unshare -ru sh -c 'hostname dockmoat-build && exec "$@"' sh "${rpm_cmd[@]}"
	else
		"${rpm_cmd[@]}"
	fi
done
(cd "$out" && sha256sum -- * >SHA256SUMS)
ls -l "$out"
