package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dockmoat/dockmoat/config"
)

// `dockmoat disable` and `enable` only record the state; the daemon
// follows it (followDisabled), so it survives a daemon restart and a
// reboot, and works the same from the host or `docker exec` into the
// sidecar. The boot guard ignores it: a host boots closed, and the daemon
// then applies the disable again.

func runDisable(opt options, out io.Writer) error {
	if err := config.WriteDisabled(opt.stateDir, config.Off{Since: time.Now(), Reason: opt.reason}); err != nil {
		return err
	}
	fmt.Fprintln(out, "dockmoat: protection disabled: published ports follow Docker's own rules, and the egress limits of deny containers are lifted too.")
	if running, known := config.DaemonRunning(opt.stateDir); known && !running {
		fmt.Fprintln(out, "No dockmoat daemon runs here: nothing changes until one starts (it then applies this); 'dockmoat enable' takes it back.")
		return nil
	}
	fmt.Fprintln(out, "A running dockmoat applies this within a second and keeps it across restarts; 'dockmoat enable' turns protection back on.")
	return nil
}

// errNoDaemon: the state says enabled, but nobody removes the bypass.
var errNoDaemon = errors.New("no dockmoat daemon runs here, so the bypass that 'dockmoat disable' installed stays in the kernel: " +
	"published ports stay open until dockmoat starts (systemctl start dockmoat, or the sidecar); it applies the enable at once")

func runEnable(opt options, out io.Writer) error {
	if err := config.ClearDisabled(opt.stateDir); err != nil {
		return err
	}
	running, known := config.DaemonRunning(opt.stateDir)
	switch {
	case known && !running:
		fmt.Fprintln(out, "dockmoat: enable recorded.")
		return errNoDaemon
	case !known:
		fmt.Fprintln(out, "dockmoat: protection enabled; a running dockmoat applies this within a second (whether one runs here could not be told).")
	default:
		fmt.Fprintln(out, "dockmoat: protection enabled; the running dockmoat applies this within a second.")
	}
	return nil
}

func orNone(reason string) string {
	if reason == "" {
		return "no reason given"
	}
	return "reason: " + reason
}
