// Package rootfs makes the Debian trees the integration tests boot or
// build images from, with debootstrap from Debian's archive (no container
// registry), once: each is cached as a tarball in the cache directory
// ($DOCKMOAT_ENGINES). It imports nothing but the standard library, so
// `make test` can build it and fetch the trees while the engines compile
// (prefetch), and the tests find them made.
package rootfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// CacheDir is where the engines, tools and trees are cached.
func CacheDir() string {
	if d := os.Getenv("DOCKMOAT_ENGINES"); d != "" {
		return d
	}
	return "/var/cache/dockmoat"
}

// Base returns a tarball of a minimal Debian bookworm (the release the
// Dockerfile's base pins) with iptables and nftables: the base of the
// sidecar image.
func Base(ctx context.Context, logf func(string, ...any)) (string, error) {
	return debootstrap(ctx, logf, "rootfs-bookworm-minbase-iptables-nftables.tar", "iptables,nftables")
}

// Host returns a tarball of a Debian bookworm host as the packages see
// one: systemd as init, D-Bus, Debian's docker.io (with its
// docker.service and docker.socket), iptables, nftables, iproute2 and
// procps. The package tests install the .deb into it, with dpkg in a
// chroot or booted under systemd-nspawn.
func Host(ctx context.Context, logf func(string, ...any)) (string, error) {
	return debootstrap(ctx, logf, "rootfs-bookworm-host-systemd-docker.tar",
		"systemd,systemd-sysv,dbus,docker.io,iptables,nftables,iproute2,procps")
}

var mu sync.Mutex

// debootstrap makes (once) and caches a minbase bookworm with the given
// packages as a tarball named name in the cache directory. A lock file
// beside it keeps two processes (the prefetch and a test) from making it
// twice.
func debootstrap(ctx context.Context, logf func(string, ...any), name, include string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	out := filepath.Join(CacheDir(), name)
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(out+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("debootstrap not installed (make deps): %w", err)
	}
	dir, err := os.MkdirTemp(CacheDir(), "rootfs-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	logf("debootstrap --variant=minbase --include=%s bookworm (cached in %s)", include, out)
	if msg, err := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+include,
		"bookworm", dir, "http://deb.debian.org/debian").CombinedOutput(); err != nil {
		return "", fmt.Errorf("debootstrap: %w: %s", err, lastLines(string(msg), 20))
	}
	// The downloaded .debs stay in apt's cache; the tree does not need them.
	debs, _ := filepath.Glob(filepath.Join(dir, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		if err := os.Remove(d); err != nil {
			return "", err
		}
	}
	// MkdirTemp made it 0700: as the tree's "/", that would lock every
	// user but root out of the whole system booted from it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	if msg, err := exec.CommandContext(ctx, "tar", "-C", dir, "--numeric-owner", "-cf", tmp, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar of rootfs: %w: %s", err, msg)
	}
	return out, os.Rename(tmp, out)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
