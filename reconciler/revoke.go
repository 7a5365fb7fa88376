package reconciler

import (
	"net/netip"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/rules"
)

// Revocation runs beside the passes, not inside them. A pass that changed
// what is installed hands its result to one worker goroutine and returns
// as soon as the firewall is written: new connections meet the new policy
// from that instant. The worker then works out which access was withdrawn
// and walks the conntrack table to cut the sessions that lost it. That
// walk costs ~9 ms whatever N is (the kernel dumps every bucket of its
// conntrack hash, 262,144 here, even when the table is empty); on the pass
// it would be most of a one-container change.
//
// The worker takes every queued result in order, so access opened by one
// pass and withdrawn by the next is still seen as withdrawn, and makes one
// walk per family for the whole queue: a session is cut when some earlier
// state allowed it and the newest does not.

// revJob is one pass's result for one family.
type revJob struct {
	fam     rules.Family
	res     rules.Result
	trusted []netip.Prefix
}

// revoker is the queue and the worker's state. open is touched only by
// the worker (at most one runs at a time).
type revoker struct {
	queue   []revJob
	running bool
	idle    chan struct{} // closed when the worker stops; nil before
	seeded  map[rules.Family]bool
	open    map[rules.Family]openAccess
	total   uint
}

// queueRevocation hands a result to the worker, starting it if needed.
// Results are immutable once built, so the worker may read them later
// (and makes their flat lists: rules.Result.Decisions).
// changed says whether the pass changed anything installed; a result that
// changed nothing is only queued as the first "before" of a family.
func (r *Reconciler) queueRevocation(fam rules.Family, res rules.Result, changed bool) {
	if r.ct == nil {
		return
	}
	rv := &r.rev
	r.revMu.Lock()
	defer r.revMu.Unlock()
	if rv.seeded == nil {
		rv.seeded, rv.open = map[rules.Family]bool{}, map[rules.Family]openAccess{}
	}
	if !changed && rv.seeded[fam] {
		return
	}
	rv.seeded[fam] = true
	rv.queue = append(rv.queue, revJob{fam: fam, res: res, trusted: r.config().TrustedSources})
	if !rv.running {
		rv.running, rv.idle = true, make(chan struct{})
		go r.revokeLoop(rv.idle)
	}
}

func (r *Reconciler) revokeLoop(idle chan struct{}) {
	rv := &r.rev
	for {
		r.revMu.Lock()
		jobs := rv.queue
		rv.queue = nil
		if len(jobs) == 0 {
			rv.running = false
			close(idle)
			r.revMu.Unlock()
			return
		}
		r.revMu.Unlock()
		befores := map[rules.Family][]openAccess{}
		var trusted []netip.Prefix
		for _, j := range jobs {
			now := accessOf(j.res.Decisions(), j.res.Allows())
			if before, known := rv.open[j.fam]; known && withdrawn(before, now) {
				befores[j.fam] = append(befores[j.fam], before)
			}
			rv.open[j.fam], trusted = now, j.trusted
		}
		for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			if len(befores[fam]) == 0 {
				continue
			}
			n, err := r.ct.Delete(fam, revoked(befores[fam], rv.open[fam], trusted))
			if err != nil {
				r.log.WithError(err).Warn("could not cut sessions whose access was withdrawn")
				continue
			}
			if n > 0 {
				r.log.WithFields(logrus.Fields{"family": fam.String(), "sessions": n}).Info("cut live sessions whose access was withdrawn")
			}
			r.revMu.Lock()
			rv.total += n
			r.revMu.Unlock()
		}
	}
}

// WaitRevocations waits until the sessions of every pass so far are cut
// and returns how many were cut since the reconciler started.
func (r *Reconciler) WaitRevocations() uint {
	for {
		r.revMu.Lock()
		if !r.rev.running {
			defer r.revMu.Unlock()
			return r.rev.total
		}
		idle := r.rev.idle
		r.revMu.Unlock()
		<-idle
	}
}
