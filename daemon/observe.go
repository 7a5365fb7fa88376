package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/metrics"
	"github.com/dockmoat/dockmoat/observe"
	"github.com/dockmoat/dockmoat/reconciler"
	"github.com/dockmoat/dockmoat/rules"
)

// Observe mode: `run --observe` or `mode: observe` in the file lets
// through what the policy refuses and counts it; `dockmoat observe` and
// `dockmoat enforce` record a mode in the state directory that wins over
// both, and the daemon follows it within a second (followState); what
// was let through is kept in ObservedFile for `dockmoat suggest`.

const ObservedFile = "observed.json"

// observePoll is how often the daemon reads the conntrack table while
// observing: an entry lives 10 s (UDP) to minutes, so none is missed.
var observePoll = 2 * time.Second

// recordObserveFlag records `run --observe` as `dockmoat observe` would,
// unless a mode is recorded already: then `plan` and `status` see the
// daemon's mode, and a `dockmoat enforce` is not undone by a restart of a
// unit that still says --observe.
func recordObserveFlag(opt Options, log logrus.FieldLogger) {
	if !opt.Observe {
		return
	}
	switch mode, err := config.ReadMode(opt.StateDir); {
	case err != nil:
		log.WithError(err).Error("--observe: cannot read the recorded mode; enforcing")
	case mode == config.ModeEnforce:
		log.Warn("--observe ignored: 'dockmoat enforce' was recorded (run 'dockmoat observe' to observe again)")
	case mode == "":
		if err := config.WriteMode(opt.StateDir, config.ModeObserve); err != nil {
			log.WithError(err).Warn("--observe: cannot record the mode; observing all the same")
		}
	}
}

// ApplyMode hands the recorded mode to the next pass; changed says it
// changes what the pass does. An unreadable record is taken as enforce
// (when in doubt, closed).
func ApplyMode(dir string, rec *reconciler.Reconciler, log logrus.FieldLogger) (changed bool) {
	mode, err := config.ReadMode(dir)
	if err != nil {
		mode = config.ModeEnforce
	}
	m := map[string]reconciler.Mode{"": reconciler.ModeFromConfig, config.ModeObserve: reconciler.ModeObserve, config.ModeEnforce: reconciler.ModeEnforce}[mode]
	changed = rec.SetMode(m)
	if err != nil && changed { // once, not at every poll
		log.WithError(err).Error("cannot read the recorded mode; enforcing")
	}
	return changed
}

// modeLogger logs when a pass runs in another mode than the last one.
func modeLogger(log logrus.FieldLogger) func(observing bool) {
	first, last := true, false
	return func(observing bool) {
		if !first && observing == last {
			return
		}
		wasFirst := first
		first, last = false, observing
		if observing {
			log.Warn("OBSERVE mode: new connections that the policy refuses are let through, counted and logged, not dropped; 'dockmoat suggest' lists them, 'dockmoat enforce' drops them")
		} else if !wasFirst {
			log.Info("enforcing: new connections that the policy refuses are dropped")
		}
	}
}

// observeLoop counts, while observing, the connections observe mode let
// through (the conntrack entries carrying rules.ObserveMark), logs each
// new source of a port once, and keeps the record in dir.
func observeLoop(ctx context.Context, dir string, rec *reconciler.Reconciler, ct *reconciler.NetlinkConntrack, m *metrics.Metrics, log logrus.FieldLogger) {
	saved, err := LoadObserved(dir)
	if err != nil {
		log.WithError(err).Warn("cannot read what observe mode saw before; starting a new record")
	}
	o := observe.New(saved, time.Now())
	t := time.NewTicker(observePoll)
	defer t.Stop()
	for kept := !saved.Since.IsZero(); ; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		snap, ok := rec.LastSnapshot()
		if !rec.Config().Observe || !ok {
			continue
		}
		if observeOnce(ct, o, snap, m, log) || !kept {
			if err := writeJSONFile(dir, ObservedFile, o.Rec); err != nil {
				log.WithError(err).Warn("observe: cannot keep the record in the state directory")
				continue
			}
			kept = true
		}
	}
}

// observeOnce reads the marked conntrack entries into o; added says
// the record changed.
func observeOnce(ct *reconciler.NetlinkConntrack, o *observe.Observer, snap rules.Snapshot, m *metrics.Metrics, log logrus.FieldLogger) (added bool) {
	var flows []reconciler.Flow
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		f, err := ct.List(fam, rules.ObserveMark)
		if err != nil {
			log.WithError(err).Warn("observe: cannot read the conntrack table")
			return false
		}
		flows = append(flows, f...)
	}
	n, fresh := o.Add(flows, snap, time.Now())
	if n == 0 {
		return false
	}
	m.Observed(n)
	for _, s := range fresh {
		log.WithFields(logrus.Fields{"container": s.Container, "port": fmt.Sprintf("%d/%s", s.Port, s.Proto), "source": s.Src.String()}).
			Warn("observe: the policy refuses this source; let through (logged once per port and source; 'dockmoat suggest' counts them)")
	}
	return true
}

func LoadObserved(dir string) (observe.Record, error) {
	var r observe.Record
	data, err := os.ReadFile(filepath.Join(dir, ObservedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return observe.Record{}, fmt.Errorf("%s: %w", ObservedFile, err)
	}
	return r, nil
}
