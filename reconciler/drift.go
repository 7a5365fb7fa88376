package reconciler

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dockmoat/dockmoat/rules"
)

// Intact reports whether the installed rules still equal what this process
// last installed: the hook first in DOCKER-USER and every owned chain's
// hashes unchanged. One iptables-save per family, no Docker call, so it is
// cheap enough to run on every netfilter change notification.
func (r *Reconciler) Intact(ctx context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nft != nil {
		if r.nftLast == "" {
			return true, nil
		}
		listing, err := r.nft.List(ctx)
		if err != nil {
			return false, err
		}
		p := FamilyPlan{Family: rules.IPv4, HookPositions: []int{1}, Observed: Observed{Owned: ParseNFT(listing)}}
		return len(drift(p, r.applied[rules.IPv4])) == 0, nil
	}
	for fam, last := range r.applied {
		if r.families[fam] == nil {
			continue
		}
		obs, err := r.observe(ctx, fam)
		if err != nil {
			return false, err
		}
		if !slices.Equal(r.observedPlan(fam, obs).HookPositions, []int{1}) {
			return false, nil
		}
		for name, want := range last {
			if got, ok := obs.Owned[name]; !ok || !slices.Equal(got, want) {
				return false, nil
			}
		}
	}
	return true, nil
}

// WatchDrift notices changes made by others between periodic resyncs and
// calls kick when dockmoat's rules are no longer intact. On iptables-nft
// hosts it listens to nf_tables change notifications over netlink (every
// rule change in the namespace raises one) and verifies ~20 ms after the
// last of a burst; on legacy hosts, which send no notifications, it
// verifies once per poll interval. Either way a verify is one
// iptables-save and no Docker call.
func (r *Reconciler) WatchDrift(ctx context.Context, variant Variant, poll time.Duration, kick func(reason string)) error {
	changes := make(chan struct{}, 1)
	if variant == VariantNFT {
		if err := subscribeNFT(ctx, changes); err != nil {
			return fmt.Errorf("subscribing to nf_tables notifications: %w", err)
		}
	}
	var tick <-chan time.Time
	if variant != VariantNFT {
		t := time.NewTicker(poll)
		defer t.Stop()
		tick = t.C
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
			debounce.Reset(20 * time.Millisecond)
			continue
		case <-debounce.C:
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
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return err
	}
	const nfnlgrpNFTables = 7
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (nfnlgrpNFTables - 1)}); err != nil {
		unix.Close(fd)
		return err
	}
	// A big receive buffer: a burst of notifications must not be lost;
	// ENOBUFS (overrun) is itself treated as a change.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
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
