package reconciler

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/netfilter"
)

// RunOptions tune the daemon loop.
type RunOptions struct {
	// Resync is the period of the full pass that repairs drift (default 30s).
	Resync time.Duration
	// MinInterval coalesces bursts of events: passes start at most this
	// often (default 5ms: a pass itself takes longer, so a burst still
	// coalesces into one pass while another runs).
	MinInterval time.Duration
	// MaxBackoff caps the retry delay after a failed pass (default 10s).
	MaxBackoff time.Duration
	// OnSync, if set, is called after every pass (metrics, tests).
	OnSync func(res netfilter.SyncResult, err error, took time.Duration)
	// Alive, if set, is called every AliveEvery while the loop waits, and
	// after every pass: systemd's watchdog. A loop that is stopped, stuck
	// or inside a pass that never ends stops calling it.
	Alive      func()
	AliveEvery time.Duration
}

func (o *RunOptions) defaults() {
	if o.Resync <= 0 {
		o.Resync = 30 * time.Second
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 5 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
}

// Run reconciles until ctx ends: once at start, after every kick (coalesced
// to one pass per MinInterval), every Resync, and with capped exponential
// backoff after a failure. It never removes rules when it stops.
func (r *Reconciler) Run(ctx context.Context, kick <-chan struct{}, opt RunOptions) error {
	opt.defaults()
	backoff := time.Duration(0)
	timer := time.NewTimer(0) // first pass right away
	defer timer.Stop()
	var last time.Time
	alive := aliveTicker(opt)
	defer alive.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-alive.C:
			opt.Alive()
			continue
		case <-kick:
			// Coalesce: one pass at most every MinInterval, however many
			// events arrive. A kick also cuts a backoff short: an event
			// (Docker back, say) is a good reason to try again now.
			resetTimer(timer, max(opt.MinInterval-time.Since(last), 0))
			continue
		case <-timer.C:
		}
		last = time.Now()
		res, err := r.Sync(ctx)
		if opt.OnSync != nil {
			opt.OnSync(res, err, time.Since(last))
		}
		if opt.Alive != nil {
			opt.Alive()
		}
		switch {
		case err != nil && errors.Is(ctx.Err(), context.Canceled):
			return nil
		case err != nil:
			backoff = min(max(2*backoff, 100*time.Millisecond), opt.MaxBackoff)
			r.logFailure(err, backoff)
			resetTimer(timer, backoff)
		default:
			if backoff > 0 {
				r.log.Info("reconcile recovered")
			}
			backoff = 0
			r.logResult(res, time.Since(last))
			resetTimer(timer, opt.Resync)
		}
	}
}

func (r *Reconciler) logFailure(err error, retry time.Duration) {
	e := r.log.WithError(err).WithField("retry_in", retry.String())
	var re *netfilter.RestoreError
	if errors.As(err, &re) {
		e = e.WithField("batch", re.Input)
	}
	e.Error("reconcile failed; installed rules left as they are")
}

func (r *Reconciler) logResult(res netfilter.SyncResult, took time.Duration) {
	if len(res.Drift) > 0 {
		r.log.WithFields(logrus.Fields{"found": res.Drift, "took": took.String()}).Warn("drift repaired: someone else changed dockmoat's rules")
	}
	if !res.Applied && !res.HookFix {
		r.log.WithField("took", took.String()).Debug("in sync")
		return
	}
	for _, p := range res.Plans {
		if p.InSync() {
			continue
		}
		open := 0
		for _, d := range p.Result.Decisions() {
			if d.Open {
				open++
			}
		}
		r.log.WithFields(logrus.Fields{
			"family": p.Family.String(), "tool": p.Tool, "chains": p.Changed,
			"ports": len(p.Result.Decisions()), "open": open,
			"took": took.String(),
		}).Info("firewall updated")
	}
}

// aliveTicker ticks every AliveEvery when Alive is set; otherwise never.
func aliveTicker(opt RunOptions) *time.Ticker {
	if opt.Alive == nil || opt.AliveEvery <= 0 {
		t := time.NewTicker(time.Hour)
		t.Stop()
		return t
	}
	return time.NewTicker(opt.AliveEvery)
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}
