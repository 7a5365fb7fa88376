package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Machine is a Debian root booted under systemd-nspawn: systemd is its
// PID 1, and it has a network namespace of its own (--private-network,
// loopback only), so whatever its services do to netfilter stays there.
// Commands run inside it through nsenter into all of its namespaces, as
// an administrator's shell on that host would.
type Machine struct {
	cmd     *exec.Cmd
	leader  int
	console *syncBuffer
	done    chan error
}

// Boot starts systemd-nspawn on root and waits until the machine's
// systemd reports the boot finished (running or degraded).
func Boot(ctx context.Context, root string) (*Machine, error) {
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		return nil, fmt.Errorf("systemd-nspawn not installed (make deps installs systemd-container): %w", err)
	}
	m := &Machine{console: &syncBuffer{}, done: make(chan error, 1)}
	// --register=no and --keep-unit: no machined or host systemd is
	// asked for anything (the host's init need not be systemd).
	m.cmd = exec.Command("systemd-nspawn", "--quiet", "--boot", "--private-network",
		"--register=no", "--keep-unit", "--directory="+root, "--machine="+filepath.Base(root))
	m.cmd.Stdout, m.cmd.Stderr = m.console, m.console
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting systemd-nspawn: %w", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	if err := m.findLeader(ctx); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.waitBooted(ctx); err != nil {
		m.Close()
		return nil, fmt.Errorf("booting %s: %w; console:\n%s", root, err, tail(m.Console(), 30))
	}
	return m, nil
}

// waitBooted waits for systemd's bus to come up, then for the boot to
// finish (is-system-running --wait).
func (m *Machine) waitBooted(ctx context.Context) error {
	for {
		out, err := m.Run(ctx, "systemctl", "is-system-running", "--wait")
		state := strings.TrimSpace(out)
		switch {
		case state == "running" || state == "degraded":
			return nil
		case !strings.Contains(state, "Failed to connect to bus"):
			return fmt.Errorf("state %q (%v)", state, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for systemd's bus: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// findLeader waits for nspawn's child that became the machine's PID 1.
func (m *Machine) findLeader(ctx context.Context) error {
	pid := m.cmd.Process.Pid
	for {
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		for _, f := range strings.Fields(string(children)) {
			comm, _ := os.ReadFile("/proc/" + f + "/comm")
			if strings.TrimSpace(string(comm)) == "systemd" {
				m.leader, _ = strconv.Atoi(f)
				return nil
			}
		}
		select {
		case err := <-m.done:
			m.done <- err
			return fmt.Errorf("systemd-nspawn exited: %v; console:\n%s", err, tail(m.Console(), 30))
		case <-ctx.Done():
			return fmt.Errorf("waiting for the machine's init: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Run runs a command inside the machine and returns its combined output.
func (m *Machine) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(m.leader), "-a"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Console is what the machine printed on its console so far.
func (m *Machine) Console() string { return m.console.String() }

// Close powers the machine off (nspawn turns SIGTERM into an orderly
// shutdown) and kills it if that takes longer than 30 s.
func (m *Machine) Close() error {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		m.done <- err
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil // nspawn reports the container's exit status
		}
		return err
	case <-time.After(30 * time.Second):
		// Killing the machine's PID 1 ends its whole PID namespace.
		if m.leader > 0 {
			_ = syscall.Kill(m.leader, syscall.SIGKILL)
		}
		_ = m.cmd.Process.Kill()
		return fmt.Errorf("the machine did not power off within 30 s; killed")
	}
}

// syncBuffer is a bytes.Buffer that nspawn's output and readers share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
