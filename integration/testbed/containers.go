package testbed

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// Image is the tag of the test workload image.
const Image = "dockmoat-testserver:latest"

var (
	serverOnce sync.Once
	serverDir  string
	serverErr  error
)

// serverPath builds integration/testserver once per process, statically,
// and returns the file. Host-side servers (ServeIn) all run this one
// file, never written again: a fresh copy per server could fail to start
// with ETXTBSY when a fork elsewhere in the process still held the copy's
// write descriptor at the moment of exec.
func serverPath() (string, error) {
	serverOnce.Do(func() {
		if serverDir, serverErr = os.MkdirTemp("", "dockmoat-testserver"); serverErr != nil {
			return
		}
		out := filepath.Join(serverDir, "server")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/dockmoat/dockmoat/integration/testserver")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			serverErr = fmt.Errorf("building testserver: %w: %s", err, msg)
		}
	})
	return filepath.Join(serverDir, "server"), serverErr
}

// serverBinary is the test server's bytes, for the workload image.
func serverBinary() ([]byte, error) {
	path, err := serverPath()
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// RemoveBuilt removes what this package built for the process (the test
// server); call it once no bed runs any more.
func RemoveBuilt() {
	if serverDir != "" {
		_ = os.RemoveAll(serverDir)
	}
}

// BuildImage builds the workload image FROM scratch with the classic
// builder: no registry, no BuildKit, works offline on every engine.
func (b *Bed) BuildImage(ctx context.Context) error { return b.BuildLabelledImage(ctx, Image, nil) }

// BuildLabelledImage builds the workload image as tag with LABELs, as an
// image from a registry may carry them.
func (b *Bed) BuildLabelledImage(ctx context.Context, tag string, labels map[string]string) error {
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
	resp, err := b.Docker.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{tag}, Labels: labels, Version: build.BuilderV1, Remove: true, ForceRemove: true,
	})
	if err != nil {
		return fmt.Errorf("building %s on %s: %w", tag, b.Engine.Name, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("building %s on %s: %s", tag, b.Engine.Name, out)
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
	Image   string   // "" = Image
	// Entrypoint replaces the image's server ("/nonexistent": a start
	// that fails after Docker connected the container).
	Entrypoint []string
}

// Container is a started test container.
type Container struct {
	ID   string
	Name string
	IP   netip.Addr
	IP6  netip.Addr // on an IPv6 bed
	// Netns is the path of its network namespace (Docker's SandboxKey).
	Netns string
}

// RunContainer creates and starts a container and returns its address.
func (b *Bed) RunContainer(ctx context.Context, s Spec) (Container, error) {
	id, err := b.CreateContainer(ctx, s)
	if err != nil {
		return Container{}, err
	}
	if _, err := b.Docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return Container{}, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	return b.Inspect(ctx, id)
}

// CreateContainer creates a container without starting it; it returns
// its ID.
func (b *Bed) CreateContainer(ctx context.Context, s Spec) (string, error) {
	exposed, bindings, err := parsePublish(s.Publish)
	if err != nil {
		return "", fmt.Errorf("ports %v: %w", s.Publish, err)
	}
	cmd := s.Cmd
	if cmd == nil {
		cmd = s.Serve
	}
	image := cmp.Or(s.Image, Image)
	cfg := &container.Config{Image: image, Cmd: cmd, Entrypoint: s.Entrypoint, Labels: s.Labels, ExposedPorts: exposed, Env: []string{"NAME=" + s.Name}}
	hc := &container.HostConfig{PortBindings: bindings}
	if s.Restart != "" {
		hc.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyMode(s.Restart)}
	}
	var nc *network.NetworkingConfig
	if strings.HasPrefix(s.Network, "container:") {
		hc.NetworkMode = container.NetworkMode(s.Network) // no network of its own
	} else if s.Network != "" {
		hc.NetworkMode = container.NetworkMode(s.Network)
		ep := &network.EndpointSettings{}
		if s.IP != "" || s.IP6 != "" {
			ep.IPAMConfig = &network.EndpointIPAMConfig{}
			ep.IPAMConfig.IPv4Address, _ = netip.ParseAddr(s.IP)
			ep.IPAMConfig.IPv6Address, _ = netip.ParseAddr(s.IP6)
		}
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{s.Network: ep}}
	}
	created, err := b.Docker.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, NetworkingConfig: nc, Name: s.Name})
	if err != nil {
		return "", fmt.Errorf("creating %s: %w", s.Name, err)
	}
	return created.ID, nil
}

// Inspect returns a container's name and first IPv4 address.
func (b *Bed) Inspect(ctx context.Context, id string) (Container, error) {
	res, err := b.Docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return Container{}, fmt.Errorf("inspecting %s: %w", id, err)
	}
	info := res.Container
	c := Container{ID: info.ID, Name: strings.TrimPrefix(info.Name, "/")}
	if info.NetworkSettings != nil {
		c.Netns = info.NetworkSettings.SandboxKey
		for _, ep := range info.NetworkSettings.Networks {
			if ep.GlobalIPv6Address.IsValid() && !c.IP6.IsValid() {
				c.IP6 = ep.GlobalIPv6Address
			}
			if ep.IPAddress.IsValid() {
				c.IP = ep.IPAddress
				break
			}
		}
	}
	return c, nil
}

// Remove force-removes a container.
func (b *Bed) Remove(ctx context.Context, id string) error {
	if _, err := b.Docker.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
		return fmt.Errorf("removing %s: %w", id, err)
	}
	return nil
}

// CreateNetwork creates a user-defined bridge network with a fixed subnet.
func (b *Bed) CreateNetwork(ctx context.Context, name, subnet string) (string, error) {
	resp, err := b.Docker.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver: "bridge",
		IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: netip.MustParsePrefix(subnet)}}},
	})
	if err != nil {
		return "", fmt.Errorf("creating network %s: %w", name, err)
	}
	return resp.ID, nil
}

// CreateNamedBridge creates a bridge network whose bridge has the name
// given (com.docker.network.bridge.name), not Docker's br-<id>.
func (b *Bed) CreateNamedBridge(ctx context.Context, name, subnet, bridge string) (string, error) {
	resp, err := b.Docker.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver:  "bridge",
		Options: map[string]string{"com.docker.network.bridge.name": bridge},
		IPAM:    &network.IPAM{Config: []network.IPAMConfig{{Subnet: netip.MustParsePrefix(subnet)}}},
	})
	if err != nil {
		return "", fmt.Errorf("creating network %s: %w", name, err)
	}
	return resp.ID, nil
}

// CreateMacvlan creates a macvlan network on the host interface parent:
// its containers sit on that link, beside the host.
func (b *Bed) CreateMacvlan(ctx context.Context, name, subnet, parent string) (string, error) {
	resp, err := b.Docker.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver:  "macvlan",
		Options: map[string]string{"parent": parent},
		IPAM:    &network.IPAM{Config: []network.IPAMConfig{{Subnet: netip.MustParsePrefix(subnet)}}},
	})
	if err != nil {
		return "", fmt.Errorf("creating network %s: %w", name, err)
	}
	return resp.ID, nil
}

// OutsideLink is the bed host's interface to the outside namespace.
func (b *Bed) OutsideLink() string { return b.Name + "vh" }

// CreateNetwork6 creates a dual-stack bridge network with fixed subnets.
func (b *Bed) CreateNetwork6(ctx context.Context, name, subnet, subnet6 string) (string, error) {
	v6 := true
	resp, err := b.Docker.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver: "bridge", EnableIPv6: &v6,
		IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: netip.MustParsePrefix(subnet)}, {Subnet: netip.MustParsePrefix(subnet6)}}},
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
	wait := b.Docker.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	statusCh, errCh := wait.Result, wait.Error
	var code int64
	select {
	case st := <-statusCh:
		code = st.StatusCode
	case err := <-errCh:
		return 0, "", fmt.Errorf("waiting for %s: %w", id, err)
	}
	rc, err := b.Docker.ContainerLogs(context.Background(), id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
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
	return b.ServeIn(b.HostNSPath(), name, ports...)
}

// ServeIn runs the test server in the network namespace at nsPath.
func (b *Bed) ServeIn(nsPath, name string, ports ...string) (stop func(), err error) {
	path, err := serverPath()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + nsPath, "--", path}, ports...)...)
	cmd.Env = append(os.Environ(), "NAME="+name)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting host server: %w", err)
	}
	// A server that ends before it is stopped leaves its ports refusing:
	// say why, or a test only sees "connection refused".
	var stopped atomic.Bool
	done := make(chan struct{})
	go func() {
		if err := cmd.Wait(); !stopped.Load() {
			b.logf("server %s in %s ended: %v: %s", name, nsPath, err, out.String())
		}
		close(done)
	}()
	return func() { stopped.Store(true); _ = cmd.Process.Kill(); <-done }, nil
}

// parsePublish reads docker run -p specs ([IP:]HOST[-END]:CTR[-END][/PROTO])
// into the container's exposed ports and bindings.
func parsePublish(specs []string) (network.PortSet, network.PortMap, error) {
	exposed, bindings := network.PortSet{}, network.PortMap{}
	for _, spec := range specs {
		rest, proto, _ := strings.Cut(spec, "/")
		if proto == "" {
			proto = "tcp"
		}
		i := strings.LastIndex(rest, ":")
		if i < 0 {
			return nil, nil, fmt.Errorf("publish %q: want [IP:]HOST:CONTAINER", spec)
		}
		hostPart, ctrPart := rest[:i], rest[i+1:]
		var ip netip.Addr
		if j := strings.LastIndex(hostPart, ":"); j >= 0 {
			a, err := netip.ParseAddr(strings.Trim(hostPart[:j], "[]"))
			if err != nil {
				return nil, nil, fmt.Errorf("publish %q: %w", spec, err)
			}
			ip, hostPart = a, hostPart[j+1:]
		}
		hosts, err := portRange(hostPart)
		if err != nil {
			return nil, nil, fmt.Errorf("publish %q: %w", spec, err)
		}
		ctrs, err := portRange(ctrPart)
		if err != nil || len(ctrs) != len(hosts) {
			return nil, nil, fmt.Errorf("publish %q: host and container ranges differ", spec)
		}
		for k, c := range ctrs {
			p, ok := network.PortFrom(c, network.IPProtocol(proto))
			if !ok {
				return nil, nil, fmt.Errorf("publish %q: bad protocol", spec)
			}
			exposed[p] = struct{}{}
			bindings[p] = append(bindings[p], network.PortBinding{HostIP: ip, HostPort: strconv.Itoa(int(hosts[k]))})
		}
	}
	return exposed, bindings, nil
}

// portRange reads "80" or "9100-9102".
func portRange(s string) ([]uint16, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	a, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return nil, err
	}
	b, err := strconv.ParseUint(hi, 10, 16)
	if err != nil || b < a {
		return nil, fmt.Errorf("bad port range %q", s)
	}
	var out []uint16
	for p := a; p <= b; p++ {
		out = append(out, uint16(p))
	}
	return out, nil
}
