#!/usr/bin/env bash
# deps.sh [--dry-run]: installs the Debian packages that `make demo` and
# `make test` need, and only those that are missing. A package counts as
# present when its command is on the PATH (any Docker: Docker CE's dockerd
# keeps Debian's docker.io out) or dpkg has it. It says what it installs
# before doing it, and apt runs with --no-remove: nothing of the host's is
# ever removed or replaced. --dry-run only prints the list.
set -euo pipefail

dry_run=0
if [[ ${1:-} == --dry-run ]]; then
	dry_run=1
fi

# package:command ("package:" when only dpkg can tell).
pairs=(
	docker.io:dockerd iptables:iptables-legacy nftables:nft ufw:ufw iproute2:ip
	util-linux:nsenter procps:pgrep libseccomp-dev: pkg-config:pkg-config gcc:gcc
	debootstrap:debootstrap systemd:systemd-analyze systemd-container:systemd-nspawn file:file
	dbus:dbus-daemon python3-dbus: python3-gi: python3-nftables: gir1.2-glib-2.0:
	zsh:zsh fish:fish groff-base:groff lintian:lintian rpm:rpm ipset:ipset strace:strace
)

missing=()
for pair in "${pairs[@]}"; do
	pkg=${pair%%:*} cmd=${pair#*:}
	if [[ -n $cmd ]] && command -v "$cmd" >/dev/null 2>&1; then
		continue
	fi
	# DEPS_IGNORE_DPKG=1 (tests): judge by the PATH alone.
	if [[ -z ${DEPS_IGNORE_DPKG:-} ]] && dpkg -s "$pkg" >/dev/null 2>&1; then
		continue
	fi
	missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
	echo "deps: nothing to install"
	exit 0
fi
echo "deps: will install (Debian packages): ${missing[*]}"
if ((dry_run)); then
	exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --no-remove "${missing[@]}"
