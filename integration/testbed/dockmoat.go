package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// BuildDockmoat builds the dockmoat binary into dir and returns its path.
func BuildDockmoat(dir string) (string, error) {
	out := filepath.Join(dir, "dockmoat")
	cmd := exec.Command("go", "build", "-o", out, "github.com/dockmoat/dockmoat/cmd/dockmoat")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building dockmoat: %w: %s", err, msg)
	}
	return out, nil
}

// Dockmoat is a `dockmoat run` daemon inside a bed's host namespace.
type Dockmoat struct {
	bed     *Bed
	Bin     string
	Config  string // config file path
	LogPath string
	// Args are added to `run` at the next Start (a scheduled audit, say).
	Args   []string
	cmd    *exec.Cmd
	exited chan error
}

func (b *Bed) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + b.HostNSPath(), "--", bin}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+b.Socket)
	// The bed's own bus, or none: never the machine's (a firewalld of
	// the machine's must not change what a bed's dockmoat does).
	bus := b.BusAddress()
	if bus == "" {
		bus = "unix:path=" + filepath.Join(filepath.Dir(b.Socket), "no-bus")
	}
	cmd.Env = append(cmd.Env, "DBUS_SYSTEM_BUS_ADDRESS="+bus)
	return cmd
}

// WriteConfig writes a config file for dockmoat in the bed's state dir.
func (b *Bed) WriteConfig(text string) (string, error) {
	p := filepath.Join(b.Dir, "dockmoat.yaml")
	if b.Engine.NoIPSet {
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			return "", fmt.Errorf("test config: %w", err)
		}
		if doc == nil {
			doc = map[string]any{}
		}
		doc["ipset"] = "off"
		data, err := yaml.Marshal(doc)
		if err != nil {
			return "", err
		}
		text = string(data)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("writing config: %w", err)
	}
	return p, nil
}

// StartDockmoat starts `dockmoat run` with the given config.
func (b *Bed) StartDockmoat(bin, configYAML string) (*Dockmoat, error) {
	cfg, err := b.WriteConfig(configYAML)
	if err != nil {
		return nil, err
	}
	d := &Dockmoat{bed: b, Bin: bin, Config: cfg, LogPath: filepath.Join(b.Dir, "dockmoat.log")}
	return d, d.Start()
}

// Start (re)starts the daemon with the current config file; its log is
// appended to LogPath.
func (d *Dockmoat) Start() error {
	f, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("opening dockmoat log: %w", err)
	}
	defer f.Close()
	args := append([]string{"run", "--config", d.Config, "--log-level", "debug", "--metrics-addr", MetricsAddr, "--state-dir", d.StateDir()}, d.Args...)
	cmd := d.bed.command(context.Background(), d.Bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting dockmoat: %w", err)
	}
	d.cmd = cmd
	d.exited = make(chan error, 1)
	go func() { d.exited <- cmd.Wait() }()
	return nil
}

// StateDir is the daemon's --state-dir (`dockmoat disable`), in the bed,
// never the machine's /var/lib/dockmoat.
func (d *Dockmoat) StateDir() string { return filepath.Join(d.bed.Dir, "state") }

// MetricsAddr is where the bed's daemon serves /metrics and /healthz, in
// the bed's host namespace (the sidecar test uses 9323).
const MetricsAddr = "127.0.0.1:9324"

// Health runs `dockmoat healthcheck` against the daemon: nil when
// /healthz says ok, else an error with what it said.
func (d *Dockmoat) Health(ctx context.Context) error {
	out, err := d.bed.Exec(ctx, d.Bin, "healthcheck", "--addr", MetricsAddr)
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// Signal sends a signal to the daemon without waiting (SIGSTOP, SIGCONT).
func (d *Dockmoat) Signal(sig syscall.Signal) error { return d.signal(sig) }

// WriteConfig replaces the daemon's config file without signalling it;
// an empty text removes the file.
func (d *Dockmoat) WriteConfig(text string) error {
	if text == "" {
		if err := os.Remove(d.Config); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing config: %w", err)
		}
		return nil
	}
	if err := os.WriteFile(d.Config, []byte(text), 0o644); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	return nil
}

// Reload writes a new config and sends SIGHUP.
func (d *Dockmoat) Reload(configYAML string) error {
	if err := os.WriteFile(d.Config, []byte(configYAML), 0o644); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	return d.signal(syscall.SIGHUP)
}

func (d *Dockmoat) signal(sig syscall.Signal) error {
	if d.cmd == nil || d.cmd.Process == nil {
		return errors.New("dockmoat is not running")
	}
	// nsenter execs dockmoat in place, so the pid is dockmoat's.
	if err := d.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling dockmoat: %w", err)
	}
	return nil
}

// Stop sends sig (SIGTERM or SIGKILL) and waits for the process to end.
func (d *Dockmoat) Stop(sig syscall.Signal) error {
	if d.cmd == nil {
		return nil
	}
	if err := d.signal(sig); err != nil {
		return err
	}
	var err error
	select {
	case err = <-d.exited:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		err = <-d.exited
	}
	d.cmd = nil
	if sig == syscall.SIGTERM && err != nil {
		return fmt.Errorf("dockmoat exited badly after SIGTERM: %w", err)
	}
	return nil
}

// Running reports whether the daemon is still alive.
func (d *Dockmoat) Running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case err := <-d.exited:
		d.exited <- err
		return false
	default:
		return true
	}
}

// Logs returns the daemon's log so far.
func (d *Dockmoat) Logs() string {
	data, _ := os.ReadFile(d.LogPath)
	return string(data)
}

// Exec runs a one-shot dockmoat command in the host namespace.
func (b *Bed) Exec(ctx context.Context, bin string, args ...string) (string, error) {
	cmd := b.command(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// WaitInSync polls `dockmoat plan --check` until the installed rules
// equal what dockmoat wants for the current Docker state, so an assertion
// that a port is closed is made against the reconciled state and not a
// moment before it.
func (d *Dockmoat) WaitInSync(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if !d.Running() {
			return fmt.Errorf("dockmoat is not running; log:\n%s", d.Logs())
		}
		out, err := d.bed.Exec(ctx, d.Bin, "plan", "--check", "--config", d.Config, "--state-dir", d.StateDir())
		if err == nil {
			return nil
		}
		last = out
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("dockmoat not in sync after %s; last plan:\n%s\nlog tail:\n%s", timeout, last, tail(d.Logs(), 30))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
