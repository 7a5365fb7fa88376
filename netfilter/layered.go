package netfilter

import (
	"context"
	"errors"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// Layered holds the policy twice, for hosts where someone else flushes
// iptables: firewalld empties every iptables table on each reload, start
// and stop, and Docker puts its own rules back when it hears of it. Main
// is the iptables backend (the hook in DOCKER-USER, which Docker's
// restored rules reach again only once dockmoat has put the hook back);
// Layer is table inet dockmoat (nft.NewLayer), which no iptables flush
// and no firewalld reload touches, so a published port stays closed
// through the whole flush-and-restore. A connection must pass both:
// they hold the same policy, so neither opens what the other closes.
// (Ports opened by ufw route rules only would stay closed in the layer:
// it is for firewalld hosts, where ufw does not run.)
//
// The same wrapper also puts table bridge dockmoat under the iptables
// backend on other hosts (nft.NewBridgeLayer): Why says which layer it is.
type Layered struct {
	Main, Layer Backend
	Why         string
}

// WhyFirewalld is Layered.Why for the firewalld layer.
const WhyFirewalld = "a second layer: firewalld flushes iptables"

// Firewalld reports whether b is the iptables backend with the firewalld
// layer under it.
func Firewalld(b Backend) bool {
	l, ok := b.(Layered)
	return ok && l.Why == WhyFirewalld
}

// Plan implements Backend: the main plans, then the layer's (Layer set).
func (l Layered) Plan(ctx context.Context, cfg config.Config, snap rules.Snapshot, fresh bool) ([]FamilyPlan, error) {
	main, err := l.Main.Plan(ctx, cfg, snap, fresh)
	if err != nil {
		return nil, err
	}
	layer, err := l.Layer.Plan(ctx, cfg, snap, fresh)
	if err != nil {
		return nil, err
	}
	for i := range layer {
		layer[i].Layer = true
		layer[i].Tool += " (" + l.Why + ")"
	}
	return append(main, layer...), nil
}

// Apply implements Backend: the layer first, so that what it closes is
// closed before the main rules change; the families installed are the
// main backend's (revocation and metrics count one policy once).
func (l Layered) Apply(ctx context.Context, plans []FamilyPlan) (Applied, error) {
	var main, layer []FamilyPlan
	for _, p := range plans {
		if p.Layer {
			layer = append(layer, p)
		} else {
			main = append(main, p)
		}
	}
	la, lerr := l.Layer.Apply(ctx, layer)
	out, merr := l.Main.Apply(ctx, main)
	out.Wrote = out.Wrote || la.Wrote
	out.Drift = append(out.Drift, la.Drift...)
	return out, errors.Join(merr, lerr)
}

// Repair implements Backend: both.
func (l Layered) Repair(ctx context.Context) ([]string, error) {
	lf, lerr := l.Layer.Repair(ctx)
	mf, merr := l.Main.Repair(ctx)
	return append(mf, lf...), errors.Join(merr, lerr)
}

// Intact implements Backend: both.
func (l Layered) Intact(ctx context.Context) (bool, error) {
	ok, err := l.Layer.Intact(ctx)
	if err != nil || !ok {
		return ok, err
	}
	return l.Main.Intact(ctx)
}

// Guard implements Backend: both.
func (l Layered) Guard(ctx context.Context, cfg config.Config, boot Boot) ([]string, error) {
	lines, lerr := l.Layer.Guard(ctx, cfg, boot)
	more, merr := l.Main.Guard(ctx, cfg, boot)
	return append(more, lines...), errors.Join(merr, lerr)
}

// Uninstall implements Backend: both.
func (l Layered) Uninstall(ctx context.Context) error {
	return errors.Join(l.Main.Uninstall(ctx), l.Layer.Uninstall(ctx))
}

// Notifies implements Backend: drift is polled unless both announce.
func (l Layered) Notifies() bool { return l.Main.Notifies() && l.Layer.Notifies() }
