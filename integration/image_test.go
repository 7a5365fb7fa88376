package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

const sidecarTag = "dockmoat:test"

var (
	sidecarOnce sync.Once
	sidecarTar  string
	sidecarErr  error
)

// sidecarImage builds the repository's Dockerfile once (offline: debootstrap
// base, vendored modules) in the first bed that asks, and saves it for the
// others to load.
func sidecarImage(t *testing.T, e *env) {
	t.Helper()
	sidecarOnce.Do(func() {
		repo, err := filepath.Abs("..")
		if err != nil {
			sidecarErr = err
			return
		}
		start := time.Now()
		if sidecarErr = e.bed.BuildSidecarImage(e.ctx, repo, sidecarTag); sidecarErr != nil {
			return
		}
		t.Logf("sidecar image built in %s", time.Since(start).Round(time.Second))
		f, err := os.CreateTemp("", "dockmoat-image-*.tar")
		if err != nil {
			sidecarErr = err
			return
		}
		defer f.Close()
		rc, err := e.bed.Docker.ImageSave(e.ctx, []string{sidecarTag})
		if err != nil {
			sidecarErr = err
			return
		}
		defer rc.Close()
		if _, sidecarErr = io.Copy(f, rc); sidecarErr == nil {
			sidecarTar = f.Name()
		}
	})
	if sidecarErr != nil {
		t.Fatalf("sidecar image: %v", sidecarErr)
	}
	if _, err := e.bed.Docker.ImageInspect(e.ctx, sidecarTag); err == nil {
		return
	}
	f, err := os.Open(sidecarTar)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	resp, err := e.bed.Docker.ImageLoad(e.ctx, f)
	if err != nil {
		t.Fatalf("loading sidecar image: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp)
	resp.Close()
}

// runSidecar starts the image the way deploy/compose.yaml does: host
// network, every capability dropped but NET_ADMIN and NET_RAW, a
// read-only root with tmpfs /run and /tmp, no new privileges, the Docker
// socket read-only, the config directory read-only.
func runSidecar(t *testing.T, e *env, name string, restart bool, cmd ...string) string {
	t.Helper()
	hc := &container.HostConfig{
		NetworkMode:    "host",
		CapDrop:        []string{"ALL"},
		CapAdd:         []string{"NET_ADMIN", "NET_RAW"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/run": "", "/tmp": ""},
		SecurityOpt:    []string{"no-new-privileges:true"},
		Binds: []string{e.bed.Socket + ":/var/run/docker.sock:ro", e.bed.Dir + ":/etc/dockmoat:ro",
			filepath.Join(e.bed.Dir, "sidecar-state") + ":/var/lib/dockmoat"},
	}
	if restart {
		hc.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}
	}
	created, err := e.bed.Docker.ContainerCreate(e.ctx, client.ContainerCreateOptions{Config: &container.Config{Image: sidecarTag, Cmd: cmd}, HostConfig: hc, Name: name})
	if err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	if _, err := e.bed.Docker.ContainerStart(e.ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	return created.ID
}

// imageExec runs a command of the sidecar image (its entrypoint replaced)
// with the sidecar's settings and returns its output.
func imageExec(t *testing.T, e *env, cmd ...string) string {
	t.Helper()
	hc := &container.HostConfig{NetworkMode: "host", CapDrop: []string{"ALL"}, CapAdd: []string{"NET_ADMIN", "NET_RAW"}}
	created, err := e.bed.Docker.ContainerCreate(e.ctx, client.ContainerCreateOptions{Config: &container.Config{Image: sidecarTag, Entrypoint: cmd[:1], Cmd: cmd[1:]}, HostConfig: hc})
	if err != nil {
		t.Fatalf("creating %v: %v", cmd, err)
	}
	defer func() { _ = e.bed.Remove(context.Background(), created.ID) }()
	if _, err := e.bed.Docker.ContainerStart(e.ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("starting %v: %v", cmd, err)
	}
	code, logs, err := e.bed.WaitExit(e.ctx, created.ID, 30*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("%v: exit %d %v\n%s", cmd, code, err, logs)
	}
	return logs
}

func (e *env) containerLogs(id string) string {
	rc, err := e.bed.Docker.ContainerLogs(e.ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	raw, _ := io.ReadAll(rc)
	return string(raw)
}

// scrape GETs a path from addr on the host namespace's loopback. The
// connection is made on the thread switched into that namespace (an
// http.Client would dial from another goroutine, in the wrong namespace).
func (e *env) scrape(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	code, body, err := e.tryScrape(addr, path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	return code, body
}

// tryScrape is scrape that returns the error, for callers that wait for
// a daemon's listener.
func (e *env) tryScrape(addr, path string) (int, string, error) {
	var code int
	var body []byte
	err := testbed.InNetns(e.bed.HostNSPath(), func() error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		code = resp.StatusCode
		body, err = io.ReadAll(resp.Body)
		return err
	})
	return code, string(body), err
}

func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("metric %s not found", series)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestSidecarImage runs the image as deploy/compose.yaml does, on a host
// whose Docker uses iptables-nft and on one whose Docker uses
// iptables-legacy, and proves it from the outside namespace.
func TestSidecarImage(t *testing.T) {
	needBeds(t)
	onVariants(t, func(t *testing.T, eng testbed.Engine, e *env) {
		sidecarImage(t, e)
		ctx := e.ctx
		inf, err := e.bed.Docker.ImageInspect(ctx, sidecarTag)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("image %s: %.1f MB", sidecarTag, float64(inf.Size)/1e6)
		// Provenance survives the flattening: the base the test built it
		// from (by name and digest) and the build's time.
		if l := inf.Config.Labels; l["org.opencontainers.image.licenses"] != "Apache-2.0" || l["org.opencontainers.image.source"] == "" ||
			l["org.opencontainers.image.base.name"] != "dockmoat-base:latest" || !strings.HasPrefix(l["org.opencontainers.image.base.digest"], "sha256:") ||
			l["org.opencontainers.image.created"] == "" {
			t.Errorf("OCI labels: %v", l)
		}
		// The nftables backend needs nft, with JSON, in the image.
		if out := imageExec(t, e, "nft", "-j", "list", "tables"); !strings.Contains(out, `"nftables"`) {
			t.Errorf("nft -j in the image: %s", out)
		}
		if _, err := e.bed.HostExec(ctx, e.bed.Iptables(), "-I", "DOCKER-USER", "-s", "192.0.2.99/32", "-j", "DROP"); err != nil {
			t.Fatal(err)
		}
		before, _ := e.bed.IptablesSave(ctx)
		e.run(t, testbed.Spec{Name: "closedapp", Publish: []string{"8080:80"}, Serve: []string{"80"}})
		e.run(t, testbed.Spec{Name: "openapp", Labels: map[string]string{"dockmoat.allow": "8081"}, Publish: []string{"8081:80"}, Serve: []string{"80"}})
		cfg, err := e.bed.WriteConfig("ufw: auto\n")
		if err != nil {
			t.Fatal(err)
		}
		side := runSidecar(t, e, "dockmoat", true, "run", "--config", "/etc/dockmoat/dockmoat.yaml", "--metrics-addr", "127.0.0.1:9323")
		// plan --check from the host binary reads the same Docker and rules.
		e.dm = &testbed.Dockmoat{Bin: dockmoatBin, Config: cfg}
		waitPlan(t, e, cfg)
		e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", B, 8080, false, ""), out("tcp", A, 8081, true, "openapp"))

		logs := e.containerLogs(side)
		want := "Docker chains found in iptables-nft"
		if eng.Legacy {
			want = "Docker chains found in iptables-legacy"
			if out, _ := e.bed.HostExec(ctx, "iptables-nft-save"); strings.Contains(out, "DOCKMOAT") {
				t.Errorf("the image wrote into iptables-nft on a legacy host")
			}
		}
		if !strings.Contains(logs, want) {
			t.Errorf("sidecar log lacks %q:\n%s", want, logs)
		}

		code, body := e.scrape(t, "127.0.0.1:9323", "/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		open := metricValue(t, body, `dockmoat_published_ports{family="ipv4",state="open"}`)
		e.run(t, testbed.Spec{Name: "openapp2", Labels: map[string]string{"dockmoat.allow": "8082"}, Publish: []string{"8082:80"}, Serve: []string{"80"}})
		waitPlan(t, e, cfg)
		e.expect(t, out("tcp", A, 8082, true, "openapp2"))
		_, body = e.scrape(t, "127.0.0.1:9323", "/metrics")
		if got := metricValue(t, body, `dockmoat_published_ports{family="ipv4",state="open"}`); got != open+1 {
			t.Errorf("open ports metric: %v before, %v after a labeled container started", open, got)
		}
		if code, body := e.scrape(t, "127.0.0.1:9323", "/healthz"); code != 200 {
			t.Errorf("/healthz: %d %s", code, body)
		}

		timeout := 10
		if _, err := e.bed.Docker.ContainerStop(ctx, side, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
			t.Fatal(err)
		}
		e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", A, 8081, true, "openapp"))

		un := runSidecar(t, e, "dockmoat-uninstall", false, "uninstall")
		code2, logs2, err := e.bed.WaitExit(ctx, un, 30*time.Second)
		if err != nil || code2 != 0 {
			t.Fatalf("uninstall: exit %d %v\n%s", code2, err, logs2)
		}
		after, _ := e.bed.IptablesSave(ctx)
		if strings.Contains(after, "DOCKMOAT") {
			t.Errorf("uninstall left rules:\n%s", after)
		}
		if b, a := testbed.ChainRules(before, "DOCKER-USER"), testbed.ChainRules(after, "DOCKER-USER"); !slices.Equal(a, b) {
			t.Errorf("DOCKER-USER changed: %q → %q", b, a)
		}
		_ = e.bed.Remove(context.Background(), un)
		_ = e.bed.Remove(context.Background(), side)
		e.dm = nil
	})
}

func waitPlan(t *testing.T, e *env, cfg string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		o, err := e.bed.Exec(e.ctx, dockmoatBin, "plan", "--check", "--config", cfg)
		if err == nil {
			return
		}
		last = o
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("not in sync:\n%s", last)
}
