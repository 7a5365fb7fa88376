package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/metrics"
	"github.com/dockmoat/dockmoat/reconciler"
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

// disabledState reads the state for the daemon; an unreadable state is
// logged and taken as enabled (when in doubt, closed).
func disabledState(dir string, log logrus.FieldLogger) (config.Off, bool) {
	off, disabled, err := config.ReadDisabled(dir)
	if err != nil {
		log.WithError(err).Error("cannot read whether protection is disabled; keeping it enabled")
		return config.Off{}, false
	}
	return off, disabled
}

// applyDisabled hands the recorded state to the next pass; changed says
// it differs from the last one applied.
func applyDisabled(dir string, rec *reconciler.Reconciler, m *metrics.Metrics, log logrus.FieldLogger) (changed bool) {
	off, disabled := disabledState(dir, log)
	if !rec.SetDisabled(disabled) {
		return false
	}
	m.Disabled(disabled)
	if disabled {
		log.WithFields(logrus.Fields{"since": off.Since.Format(time.RFC3339), "reason": off.Reason}).
			Warn("protection DISABLED by 'dockmoat disable': published ports follow Docker's own rules, and deny containers' egress is not limited, until 'dockmoat enable'")
	} else {
		log.Info("protection enabled")
	}
	return true
}

// followDisabled polls the recorded state (disable and the mode) every
// second (a read of small files; no inotify, which a bind mount can hide)
// and asks for a pass when it changes. The daemon applies it once before its first pass.
func followDisabled(ctx context.Context, dir string, rec *reconciler.Reconciler, m *metrics.Metrics, log logrus.FieldLogger, poke func()) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			off := applyDisabled(dir, rec, m, log)
			if applyMode(dir, rec, log) || off {
				poke()
			}
		}
	}
}

func orNone(reason string) string {
	if reason == "" {
		return "no reason given"
	}
	return "reason: " + reason
}
