package reconciler

import (
	"context"
	"fmt"
	"time"

	"github.com/dockmoat/dockmoat/netfilter/nfgen"
	"golang.org/x/sys/unix"
)

// WatchDrift notices changes made by others between periodic resyncs and
// calls kick when dockmoat's rules are no longer intact. Where the backend
// lives in nf_tables (iptables-nft, nftables) it listens to nf_tables
// change notifications over netlink (every rule change in the namespace
// raises one) and verifies 20 ms after the first of a burst, and again
// after each later change; on legacy hosts, which send no notifications,
// it verifies once per poll interval. Either way a verify is one listing
// and no Docker call.
func (r *Reconciler) WatchDrift(ctx context.Context, poll time.Duration, kick func(reason string)) error {
	changes := make(chan struct{}, 1)
	notifies := r.nf.Notifies()
	if notifies {
		if err := subscribeNFT(ctx, changes); err != nil {
			return fmt.Errorf("subscribing to nf_tables notifications: %w", err)
		}
	}
	var tick <-chan time.Time
	if !notifies {
		t := time.NewTicker(poll)
		defer t.Stop()
		tick = t.C
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	armed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
			// Verify 20 ms after the first change of a burst, not after
			// the last: a long burst (Docker recreating its chains after
			// a flush) must not delay the repair to its end. Changes
			// after the check arm the next one.
			if !armed {
				debounce.Reset(20 * time.Millisecond)
				armed = true
			}
			continue
		case <-debounce.C:
			armed = false
		case <-tick:
		}
		ok, err := r.Intact(ctx)
		if err != nil {
			r.log.WithError(err).Debug("drift check failed")
			continue
		}
		if !ok {
			// Put back the last installed rules now, without waiting for
			// Docker; then a full pass checks them against Docker's state.
			if _, err := r.RepairLast(ctx); err != nil {
				r.log.WithError(err).Warn("fast drift repair failed; the next pass retries")
			}
			kick("drift")
		}
	}
}

// subscribeNFT joins the NFNLGRP_NFTABLES netlink group and signals
// changes on every message, until ctx ends.
func subscribeNFT(ctx context.Context, changes chan<- struct{}) error {
	// A big receive buffer: a burst of notifications must not be lost;
	// ENOBUFS (overrun) is itself treated as a change.
	fd, err := nfgen.Join(0, 1<<20)
	if err != nil {
		return err
	}
	// Wake up every second to notice ctx's end (closing a netlink socket
	// does not interrupt a blocked recv).
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 64*1024)
		for ctx.Err() == nil {
			_, _, err := unix.Recvfrom(fd, buf, 0)
			switch err {
			case nil, unix.ENOBUFS:
			case unix.EAGAIN, unix.EINTR:
				continue
			default:
				return
			}
			select {
			case changes <- struct{}{}:
			default:
			}
		}
	}()
	return nil
}
