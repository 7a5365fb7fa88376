package daemon

import (
	"context"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/reconciler"
)

// ufwInputPoll is how often ufw's plain rules are read (ufw_input: true):
// `ufw allow 443` opens the published port 443 within it.
var ufwInputPoll = 3 * time.Second

// ufwReader reads ufw's plain rules as allows (ipt.Backend.UFWInput).
type ufwReader interface {
	UFWInput(ctx context.Context) ([]config.AllowRule, []string, error)
}

// ufwInput follows ufw's plain rules while the config says ufw_input:
// true, and asks for a pass when their translation changes.
type ufwInput struct {
	rec     *reconciler.Reconciler
	log     logrus.FieldLogger
	poke    func()
	skipped []string
	said    bool // the backend cannot read them: said once
}

// followUFWInput reads ufw's rules once, then follows them from a
// goroutine.
func followUFWInput(ctx context.Context, rec *reconciler.Reconciler, log logrus.FieldLogger, poke func()) {
	u := &ufwInput{rec: rec, log: log, poke: poke}
	u.once(ctx)
	go u.follow(ctx)
}

func (u *ufwInput) follow(ctx context.Context) {
	t := time.NewTicker(ufwInputPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			u.once(ctx)
		}
	}
}

// ReadUFWInput is one read, for `plan`.
func ReadUFWInput(ctx context.Context, rec *reconciler.Reconciler, log logrus.FieldLogger) {
	(&ufwInput{rec: rec, log: log, poke: func() {}}).once(ctx)
}

func (u *ufwInput) once(ctx context.Context) {
	if !u.rec.Config().UFWInput {
		if u.rec.SetUFWAllows(nil) {
			u.poke()
		}
		return
	}
	b := u.rec.Backend()
	if l, ok := b.(netfilter.Layered); ok {
		b = l.Main
	}
	r, ok := b.(ufwReader)
	if !ok {
		if !u.said {
			u.log.Error("ufw_input: true needs the iptables backend (ufw's rules are iptables rules); on Docker's nftables backend open ports with labels or the config file")
			u.said = true
		}
		return
	}
	allows, skipped, err := r.UFWInput(ctx)
	if err != nil {
		u.log.WithError(err).Warn("ufw_input: cannot read ufw's rules; keeping the last ones read")
		return
	}
	if !slices.Equal(skipped, u.skipped) {
		for _, s := range skipped {
			u.log.Warn("ufw_input: " + s)
		}
		u.skipped = skipped
	}
	if u.rec.SetUFWAllows(allows) {
		u.log.WithField("rules", len(allows)).Info("ufw_input: ufw's allow rules changed; published ports follow")
		u.poke()
	}
}
