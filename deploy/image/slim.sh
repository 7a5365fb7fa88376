#!/bin/sh
# slim.sh OUT [ARCH] writes into OUT the runtime of dockmoat's image:
# iptables (both variants) and nft for ARCH, the libraries their loader
# needs, iptables' extension modules, the files they read, and a dpkg
# status for image scanners. No shell, no package manager, no coreutils.
#
# ARCH defaults to this system's. For another ARCH nothing is run under
# emulation: the packages are downloaded for ARCH (dpkg multiarch) and
# unpacked, and their libraries are found by reading the ELF headers
# (readelf) instead of asking the loader (ldd). The Dockerfile runs it on
# the build platform; integration/image_test.go runs it for arm64.
set -eu
out=$1
native=$(dpkg --print-architecture)
arch=${2:-$native}
bins="usr/sbin/xtables-nft-multi usr/sbin/xtables-legacy-multi usr/sbin/nft"

if [ "$arch" = "$native" ]; then
	root=
	if ! command -v iptables-legacy >/dev/null || ! command -v iptables-nft >/dev/null || ! command -v nft >/dev/null; then
		apt-get update && apt-get install -y --no-install-recommends iptables nftables
	fi
else
	root=/tmp/slim-root
	debs=/tmp/slim-debs
	dpkg --add-architecture "$arch"
	apt-get update
	command -v readelf >/dev/null || apt-get install -y --no-install-recommends binutils
	mkdir -p "$root" "$debs"
	apt-get install -y --download-only --no-install-recommends -o Dir::Cache::archives="$debs" \
		"iptables:$arch" "nftables:$arch"
	for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$root"; done
fi

xt=$(find "$root/usr/lib" -name libxt_comment.so | head -n1)
xt=${xt%/*}
mkdir -p "$out/usr/sbin" "$out/etc" "$out/tmp" "$out/run" "$out/var/lib/dpkg" "$out${xt#"$root"}"
for b in $bins; do cp -a "$root/$b" "$out/usr/sbin/"; done
cp -a "$xt/." "$out${xt#"$root"}/"

if [ -z "$root" ]; then
	for f in $bins "$xt"/*.so; do ldd "/${f#/}" 2>/dev/null; done |
		awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
		while read -r lib; do cp -L --parents "$lib" "$out"; done
	cp -a /etc/ld.so.cache "$out/etc/"
	cp -a /var/lib/dpkg/status "$out/var/lib/dpkg/"
else
	# The closure of DT_NEEDED over the unpacked tree, and the loader
	# at the path the binaries ask for (PT_INTERP).
	libc=$(find "$root" -name libc.so.6 | head -n1)
	triplet=${libc%/*}
	triplet=${triplet##*/}
	# Debian 12's packages still install into /lib and /usr/lib both.
	libdirs="$root/lib/$triplet $root/usr/lib/$triplet"
	todo=$(for b in $bins; do echo "$root/$b"; done; ls "$xt"/*.so)
	seen=" "
	while [ -n "$todo" ]; do
		next=
		for f in $todo; do
			for lib in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
				case "$seen" in *" $lib "*) continue ;; esac
				seen="$seen$lib "
				src=
				for d in $libdirs; do [ -e "$d/$lib" ] && src="$d/$lib" && break; done
				[ -n "$src" ] || { echo "slim.sh: $lib (needed by $f) not in $libdirs" >&2; exit 1; }
				dst="$out${src#"$root"}"
				mkdir -p "${dst%/*}"
				cp -L "$src" "$dst"
				next="$next $src"
			done
		done
		todo=$next
	done
	interp=$(readelf -l "$root/usr/sbin/nft" | sed -n 's/.*program interpreter: \(.*\)\]/\1/p')
	mkdir -p "$out${interp%/*}"
	cp "$(find "$root" -type f -name "${interp##*/}" | head -n1)" "$out$interp"
	for d in "$debs"/*.deb; do dpkg-deb -f "$d"; echo "Status: install ok installed"; echo; done >"$out/var/lib/dpkg/status"
fi

for n in iptables ip6tables; do
	for s in "" -save -restore; do
		ln -s xtables-nft-multi "$out/usr/sbin/$n$s"
		ln -s xtables-nft-multi "$out/usr/sbin/$n-nft$s"
		ln -s xtables-legacy-multi "$out/usr/sbin/$n-legacy$s"
	done
done
for f in protocols services ethertypes nsswitch.conf passwd group; do
	[ -e "/etc/$f" ] && cp -a "/etc/$f" "$out/etc/"
done
chmod 1777 "$out/tmp"
