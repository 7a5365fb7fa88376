package daemon

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/host"
	"github.com/dockmoat/dockmoat/metrics"
	"github.com/dockmoat/dockmoat/reconciler"
)

// The daemon audits its own host on a schedule (--audit-every), so that a
// port reachable beyond its policy — a user ACCEPT in DOCKER-USER, a
// foreign table, a disabled protection — reaches an operator through
// dockmoat_ports_beyond_policy and an alert, not only when someone runs
// `dockmoat audit` by hand. The audit reads and never writes; it runs
// beside the loop, on the configuration of the next pass.

// auditFirst is how long after start the first scheduled audit runs: the
// first passes have settled by then.
var auditFirst = time.Minute

// auditLoop runs the scheduled audit every `every` until ctx ends; 0 is
// off.
func auditLoop(ctx context.Context, opt Options, log *logrus.Logger, rec *reconciler.Reconciler, m *metrics.Metrics, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTimer(min(auditFirst, every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := host.Audit(ctx, opt.Host, quietLogger(log), rec.Config(), nil)
		if err != nil {
			log.WithError(err).Warn("scheduled audit failed; dockmoat_ports_beyond_policy keeps its last value")
		}
		m.ObserveAudit(logBeyond(log, rep), err)
		t.Reset(every)
	}
}

// logBeyond logs each port and egress policy reachable beyond its
// policy, and counts them.
func logBeyond(log logrus.FieldLogger, rep report.Report) int {
	n := 0
	for _, r := range rep.Rows {
		if r.Beyond {
			n++
			log.WithFields(logrus.Fields{"container": r.Container, "port": r.HostPort, "proto": r.Proto, "exposure": r.Exposure}).
				Warn("published port reachable beyond its policy: " + r.Reason + " (dockmoat audit --explain says how)")
		}
	}
	for _, e := range rep.Egress {
		if e.Beyond {
			n++
			log.WithFields(logrus.Fields{"container": e.Container, "family": e.Family}).
				Warn("egress beyond its policy: outside " + e.Outside + ", host " + e.Host)
		}
	}
	return n
}

// quietLogger is log at warning level: the audit's own setup messages
// (variant found, backend) would repeat at every run.
func quietLogger(log *logrus.Logger) *logrus.Logger {
	q := logrus.New()
	q.SetOutput(log.Out)
	q.SetFormatter(log.Formatter)
	q.SetLevel(min(log.GetLevel(), logrus.WarnLevel))
	return q
}
