package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// firewalld in a bed: Debian bookworm's firewalld 1.3.3, unpacked by
// `make engines` into $DOCKMOAT_ENGINES/firewalld (never installed: the
// package would enable the service on the machine), runs in the bed's
// host namespace on a D-Bus system bus of the bed's own (a dbus-daemon
// whose socket is in the bed's run directory), with its own configuration
// directory in the bed's state directory. dockerd and dockmoat are pointed
// at that bus with DBUS_SYSTEM_BUS_ADDRESS. Nothing of the machine's is
// touched: the machine's bus and /etc/firewalld are never used.

// FirewalldDir is where `make engines` unpacks firewalld.
func FirewalldDir() string {
	dir := os.Getenv("DOCKMOAT_ENGINES")
	if dir == "" {
		dir = "/var/cache/dockmoat"
	}
	return filepath.Join(dir, "firewalld")
}

// HaveFirewalld reports whether firewalld is unpacked and its Python
// libraries are installed.
func HaveFirewalld() error {
	if !isExec(filepath.Join(FirewalldDir(), "usr/sbin/firewalld")) {
		return fmt.Errorf("firewalld not unpacked in %s (run `make engines`)", FirewalldDir())
	}
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		return fmt.Errorf("dbus-daemon: %w", err)
	}
	return nil
}

const busConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`

// BusAddress is the bed's D-Bus system bus ("" without firewalld).
func (b *Bed) BusAddress() string {
	if b.Engine.Firewalld == "" {
		return ""
	}
	return "unix:path=" + filepath.Join(filepath.Dir(b.Socket), "bus.sock")
}

// FirewalldConfDir is the bed's firewalld configuration directory.
func (b *Bed) FirewalldConfDir() string { return filepath.Join(b.Dir, "firewalld") }

// startBus starts the bed's dbus-daemon, then firewalld with the
// engine's firewall backend, and waits until firewalld runs.
func (b *Bed) startBus(ctx context.Context) error {
	if err := HaveFirewalld(); err != nil {
		return err
	}
	sock := strings.TrimPrefix(b.BusAddress(), "unix:path=")
	conf := filepath.Join(b.Dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConf, sock)), 0o644); err != nil {
		return err
	}
	bus := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile")
	bus.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startLogged(bus, filepath.Join(b.Dir, "dbus.log")); err != nil {
		return fmt.Errorf("starting dbus-daemon: %w", err)
	}
	b.bus = bus
	src := filepath.Join(FirewalldDir(), "etc/firewalld")
	if err := os.MkdirAll(b.FirewalldConfDir(), 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", src+"/.", b.FirewalldConfDir()).CombinedOutput(); err != nil {
		return fmt.Errorf("copying firewalld's configuration: %v: %s", err, out)
	}
	confFile := filepath.Join(b.FirewalldConfDir(), "firewalld.conf")
	data, err := os.ReadFile(confFile)
	if err != nil {
		return err
	}
	text := strings.Replace(string(data), "FirewallBackend=nftables", "FirewallBackend="+b.Engine.Firewalld, 1)
	if err := os.WriteFile(confFile, []byte(text), 0o644); err != nil {
		return err
	}
	return b.StartFirewalld(ctx)
}

// StartFirewalld starts firewalld (again) and waits until it runs.
func (b *Bed) StartFirewalld(ctx context.Context) error {
	fw := exec.Command("nsenter", "--net="+b.HostNSPath(), "--", "/usr/bin/python3", filepath.Join(FirewalldDir(), "usr/sbin/firewalld"),
		"--nofork", "--nopid", "--system-config", b.FirewalldConfDir(),
		"--default-config", filepath.Join(FirewalldDir(), "usr/lib/firewalld"), "--log-target", "console")
	fw.Env = b.firewalldEnv()
	fw.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startLogged(fw, filepath.Join(b.Dir, "firewalld.log")); err != nil {
		return fmt.Errorf("starting firewalld: %w", err)
	}
	b.firewalld = fw
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := b.FirewallCmd(ctx, "--state")
		if err == nil && strings.TrimSpace(out) == "running" {
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(b.Dir, "firewalld.log"))
			return fmt.Errorf("firewalld not running after 30s (%v: %s); log:\n%s", err, out, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StopFirewalld stops firewalld (SIGTERM, as systemd does) and waits.
func (b *Bed) StopFirewalld() error {
	if b.firewalld == nil {
		return nil
	}
	_ = b.firewalld.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- b.firewalld.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = b.firewalld.Process.Kill()
		<-done
	}
	b.firewalld = nil
	return nil
}

// FirewallCmd runs firewall-cmd against the bed's firewalld.
func (b *Bed) FirewallCmd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + b.HostNSPath(), "--", "/usr/bin/python3",
		filepath.Join(FirewalldDir(), "usr/bin/firewall-cmd")}, args...)...)
	cmd.Env = b.firewalldEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (b *Bed) firewalldEnv() []string {
	return append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+b.BusAddress(),
		"PYTHONPATH="+filepath.Join(FirewalldDir(), "usr/lib/python3/dist-packages"))
}

// stopBus ends firewalld and the bus (Close).
func (b *Bed) stopBus() {
	_ = b.StopFirewalld()
	if b.bus != nil {
		_ = b.bus.Process.Kill()
		_ = b.bus.Wait()
		b.bus = nil
	}
}

// startLogged starts cmd with its output appended to logPath.
func startLogged(cmd *exec.Cmd, logPath string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	return cmd.Start()
}
