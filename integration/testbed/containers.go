package testbed

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
)

// Image is the tag of the test workload image.
const Image = "dockmoat-testserver:latest"

var (
	serverOnce sync.Once
	serverBin  []byte
	serverErr  error
)

// serverBinary builds integration/testserver once per process, statically.
func serverBinary() ([]byte, error) {
	serverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dockmoat-testserver")
		if err != nil {
			serverErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "server")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/dockmoat/dockmoat/integration/testserver")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			serverErr = fmt.Errorf("building testserver: %w: %s", err, msg)
			return
		}
		serverBin, serverErr = os.ReadFile(out)
	})
	return serverBin, serverErr
}

// BuildImage builds the workload image FROM scratch with the classic
// builder: no registry, no BuildKit, works offline on every engine.
func (b *Bed) BuildImage(ctx context.Context) error {
	bin, err := serverBinary()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n")},
		{"server", 0o755, bin},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := b.Docker.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags: []string{Image}, Version: build.BuilderV1, Remove: true, ForceRemove: true,
	})
	if err != nil {
		return fmt.Errorf("building %s on %s: %w", Image, b.Engine.Name, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("building %s on %s: %s", Image, b.Engine.Name, out)
	}
	return nil
}

// Spec describes a test container.
type Spec struct {
	Name    string
	Labels  map[string]string
	Publish []string // docker run -p syntax: "8080:80", "127.0.0.1:8086:80", "8053:53/udp"
	Serve   []string // ports the server answers on: "80", "53/udp"
	Cmd     []string // overrides Serve (e.g. "connect", "host:port")
	Network string   // "" = default bridge
	IP      string   // fixed address on Network
	IP6     string   // fixed IPv6 address on Network
	Restart string   // restart policy name
}

// Container is a started test container.
type Container struct {
	ID   string
	Name string
	IP   netip.Addr
	IP6  netip.Addr // on an IPv6 bed
}

// RunContainer creates and starts a container and returns its address.
func (b *Bed) RunContainer(ctx context.Context, s Spec) (Container, error) {
	exposed, bindings, err := nat.ParsePortSpecs(s.Publish)
	if err != nil {
		return Container{}, fmt.Errorf("ports %v: %w", s.Publish, err)
	}
	cmd := s.Cmd
	if cmd == nil {
		cmd = s.Serve
	}
	cfg := &container.Config{Image: Image, Cmd: cmd, Labels: s.Labels, ExposedPorts: exposed, Env: []string{"NAME=" + s.Name}}
	hc := &container.HostConfig{PortBindings: bindings}
	if s.Restart != "" {
		hc.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyMode(s.Restart)}
	}
	var nc *network.NetworkingConfig
	if s.Network != "" {
		hc.NetworkMode = container.NetworkMode(s.Network)
		ep := &network.EndpointSettings{}
		if s.IP != "" || s.IP6 != "" {
			ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: s.IP, IPv6Address: s.IP6}
		}
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{s.Network: ep}}
	}
	created, err := b.Docker.ContainerCreate(ctx, cfg, hc, nc, nil, s.Name)
	if err != nil {
		return Container{}, fmt.Errorf("creating %s: %w", s.Name, err)
	}
	if err := b.Docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return Container{}, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	return b.Inspect(ctx, created.ID)
}

// Inspect returns a container's name and first IPv4 address.
func (b *Bed) Inspect(ctx context.Context, id string) (Container, error) {
	info, err := b.Docker.ContainerInspect(ctx, id)
	if err != nil {
		return Container{}, fmt.Errorf("inspecting %s: %w", id, err)
	}
	c := Container{ID: info.ID, Name: strings.TrimPrefix(info.Name, "/")}
	if info.NetworkSettings != nil {
		for _, ep := range info.NetworkSettings.Networks {
			if a, err := netip.ParseAddr(ep.GlobalIPv6Address); err == nil && !c.IP6.IsValid() {
				c.IP6 = a
			}
			if a, err := netip.ParseAddr(ep.IPAddress); err == nil {
				c.IP = a
				break
			}
		}
	}
	return c, nil
}

// Remove force-removes a container.
func (b *Bed) Remove(ctx context.Context, id string) error {
	if err := b.Docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil {
		return fmt.Errorf("removing %s: %w", id, err)
	}
	return nil
}

// CreateNetwork creates a user-defined bridge network with a fixed subnet.
func (b *Bed) CreateNetwork(ctx context.Context, name, subnet string) (string, error) {
	resp, err := b.Docker.NetworkCreate(ctx, name, network.CreateOptions{
		Driver: "bridge",
		IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet}}},
	})
	if err != nil {
		return "", fmt.Errorf("creating network %s: %w", name, err)
	}
	return resp.ID, nil
}

// CreateNetwork6 creates a dual-stack bridge network with fixed subnets.
func (b *Bed) CreateNetwork6(ctx context.Context, name, subnet, subnet6 string) (string, error) {
	v6 := true
	resp, err := b.Docker.NetworkCreate(ctx, name, network.CreateOptions{
		Driver: "bridge", EnableIPv6: &v6,
		IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet}, {Subnet: subnet6}}},
	})
	if err != nil {
		return "", fmt.Errorf("creating network %s: %w", name, err)
	}
	return resp.ID, nil
}

// WaitExit waits for a container to stop and returns its exit code and logs.
func (b *Bed) WaitExit(ctx context.Context, id string, timeout time.Duration) (int64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	statusCh, errCh := b.Docker.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	var code int64
	select {
	case st := <-statusCh:
		code = st.StatusCode
	case err := <-errCh:
		return 0, "", fmt.Errorf("waiting for %s: %w", id, err)
	}
	rc, err := b.Docker.ContainerLogs(context.Background(), id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return code, "", fmt.Errorf("logs of %s: %w", id, err)
	}
	defer rc.Close()
	raw, _ := io.ReadAll(rc)
	return code, demux(raw), nil
}

// demux strips Docker's 8-byte stream headers from non-TTY logs.
func demux(raw []byte) string {
	var out bytes.Buffer
	for len(raw) >= 8 {
		n := int(raw[4])<<24 | int(raw[5])<<16 | int(raw[6])<<8 | int(raw[7])
		raw = raw[8:]
		if n > len(raw) {
			n = len(raw)
		}
		out.Write(raw[:n])
		raw = raw[n:]
	}
	return out.String()
}

// ServeOnHost runs the test server in the bed's host namespace itself, as
// a host service (SSH stand-in) beside Docker; stop ends it.
func (b *Bed) ServeOnHost(name string, ports ...string) (stop func(), err error) {
	bin, err := serverBinary()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(b.Dir, "host-server")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		return nil, fmt.Errorf("writing host server: %w", err)
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + b.HostNSPath(), "--", path}, ports...)...)
	cmd.Env = append(os.Environ(), "NAME="+name)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting host server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return func() { _ = cmd.Process.Kill(); <-done }, nil
}
