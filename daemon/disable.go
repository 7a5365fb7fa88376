package daemon

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/metrics"
	"github.com/dockmoat/dockmoat/reconciler"
)

// DisabledState reads the state for the daemon; an unreadable state is
// logged and taken as enabled (when in doubt, closed).
func DisabledState(dir string, log logrus.FieldLogger) (config.Off, bool) {
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
	off, disabled := DisabledState(dir, log)
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
			if ApplyMode(dir, rec, log) || off {
				poke()
			}
		}
	}
}
