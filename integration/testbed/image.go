package testbed

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/dockmoat/dockmoat/integration/rootfs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// BaseRootfs is rootfs.Base: the sidecar image's base, a minimal Debian
// bookworm with iptables and nftables, cached.
func BaseRootfs(ctx context.Context, logf func(string, ...any)) (string, error) {
	return rootfs.Base(ctx, logf)
}

// HostRootfs is rootfs.Host: a Debian bookworm host with systemd,
// Debian's docker.io, iptables and nftables, cached.
func HostRootfs(ctx context.Context, logf func(string, ...any)) (string, error) {
	return rootfs.Host(ctx, logf)
}

// ImportImage imports a filesystem tarball as an image (docker import).
func (b *Bed) ImportImage(ctx context.Context, r io.Reader, ref string, changes ...string) error {
	rc, err := b.Docker.ImageImport(ctx, client.ImageImportSource{Source: r, SourceName: "-"}, ref, client.ImageImportOptions{Changes: changes})
	if err != nil {
		return fmt.Errorf("importing %s: %w", ref, err)
	}
	defer rc.Close()
	msg, _ := io.ReadAll(rc)
	if bytes.Contains(msg, []byte(`"error"`)) {
		return fmt.Errorf("importing %s: %s", ref, msg)
	}
	return nil
}

// BuildSidecarImage builds the repository's Dockerfile offline: the base
// from debootstrap, a builder image of that base plus this machine's Go
// toolchain, and the module dependencies vendored into the build context.
func (b *Bed) BuildSidecarImage(ctx context.Context, repo, tag string) error {
	tarball, err := BaseRootfs(ctx, b.logf)
	if err != nil {
		return err
	}
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	err = b.ImportImage(ctx, f, "dockmoat-base:latest")
	f.Close()
	if err != nil {
		return err
	}
	base, err := b.Docker.ImageInspect(ctx, "dockmoat-base:latest")
	if err != nil {
		return fmt.Errorf("inspecting the base: %w", err)
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(builderTar(pw, tarball, strings.TrimSpace(string(goroot)))) }()
	if err := b.ImportImage(ctx, pr, "dockmoat-builder:latest",
		"ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"ENV GOTOOLCHAIN=local", "ENV GOFLAGS=-mod=vendor", "ENV HOME=/root"); err != nil {
		return err
	}
	buildCtx, err := contextTar(repo)
	if err != nil {
		return err
	}
	resp, err := b.Docker.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags: []string{tag}, Version: build.BuilderV1, Remove: true, ForceRemove: true,
		BuildArgs: map[string]*string{
			"BASE": ptr("dockmoat-base:latest"), "BASE_NAME": ptr("dockmoat-base:latest"), "BASE_DIGEST": ptr(base.ID),
			"BUILDER": ptr("dockmoat-builder:latest"), "VERSION": ptr("test"),
			// The classic builder sets no platform arguments.
			"BUILDPLATFORM": ptr("linux/" + runtime.GOARCH), "CREATED": ptr(time.Now().UTC().Format(time.RFC3339)),
		},
	})
	if err != nil {
		return fmt.Errorf("building %s: %w", tag, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if bytes.Contains(msg, []byte(`"error"`)) || bytes.Contains(msg, []byte(`"errorDetail"`)) {
		return fmt.Errorf("building %s: %s", tag, tail(string(msg), 30))
	}
	return nil
}

func ptr(s string) *string { return &s }

// builderTar writes the rootfs tarball followed by the Go toolchain at
// usr/local/go.
func builderTar(w io.Writer, base, goroot string) error {
	tw := tar.NewWriter(w)
	f, err := os.Open(base)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := addTree(tw, goroot, "usr/local/go", nil); err != nil {
		return err
	}
	return tw.Close()
}

// contextTar packs the repository (without .git and build output) plus a
// freshly vendored copy of the module dependencies.
func contextTar(repo string) (io.Reader, error) {
	vendor, err := os.MkdirTemp("", "dockmoat-vendor")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(vendor)
	cmd := exec.Command("go", "mod", "vendor", "-o", filepath.Join(vendor, "vendor"))
	cmd.Dir = repo
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go mod vendor: %w: %s", err, msg)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	skip := func(rel string) bool {
		return rel == ".git" || rel == "bin" || rel == "vendor" || strings.HasSuffix(rel, ".test")
	}
	if err := addTree(tw, repo, "", skip); err != nil {
		return nil, err
	}
	if err := addTree(tw, filepath.Join(vendor, "vendor"), "vendor", nil); err != nil {
		return nil, err
	}
	return &buf, tw.Close()
}

// addTree adds a directory to a tar under prefix.
func addTree(tw *tar.Writer, root, prefix string, skip func(string) bool) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(filepath.Join(prefix, rel))
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
}
