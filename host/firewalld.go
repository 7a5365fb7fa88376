package host

import (
	"context"
	"os/exec"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/firewalld"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/nft"
	"github.com/dockmoat/dockmoat/reconciler"
)

// firewalldRuns asks the system bus whether firewalld runs; no bus, no
// firewalld.
func firewalldRuns(ctx context.Context, log logrus.FieldLogger) bool {
	bus, err := firewalld.Connect()
	if err != nil {
		log.WithError(err).Debug("no D-Bus system bus: firewalld not looked for")
		return false
	}
	defer bus.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	running, err := bus.Running(cctx)
	if err != nil {
		log.WithError(err).Debug("firewalld not looked for")
	}
	return running
}

// withFirewalldLayer returns the iptables backend layered over table
// inet dockmoat when firewalld runs (netfilter.Layered says why).
func withFirewalldLayer(ctx context.Context, main netfilter.Backend, log logrus.FieldLogger) netfilter.Backend {
	if !firewalldRuns(ctx, log) {
		return withBridgeLayer(main, log)
	}
	log.Info("firewalld runs: its reloads and restarts empty every iptables table, so dockmoat also keeps the policy in table inet dockmoat, which they do not touch, and puts its iptables rules back on firewalld's signals")
	return netfilter.Layered{Main: main, Layer: nft.NewLayer(nft.Exec{}, log), Why: netfilter.WhyFirewalld}
}

// withBridgeLayer puts table bridge dockmoat (nft.BridgeTable) under the
// iptables backend where the nft tool is there; without it, egress-deny
// containers' packets are judged by the address they claim, and the
// log says so once.
func withBridgeLayer(main netfilter.Backend, log logrus.FieldLogger) netfilter.Backend {
	if _, err := exec.LookPath("nft"); err != nil {
		log.Warn("the nft tool is missing: an egress-deny container that sends from another address is not refused (install nftables)")
		return main
	}
	return netfilter.Layered{Main: main, Layer: nft.NewBridgeLayer(nft.Exec{}, log), Why: "binds egress-deny containers to their addresses"}
}

// UninstallLayer removes table inet dockmoat on an iptables host where it
// was the firewalld layer and firewalld no longer runs (so the backend
// is not layered now): the table must not outlive dockmoat.
func UninstallLayer(ctx context.Context, rec *reconciler.Reconciler, log logrus.FieldLogger) error {
	if _, ok := rec.Backend().(*nft.Backend); ok || netfilter.Firewalld(rec.Backend()) {
		return nil // removed with the rest
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return nil // no nftables tool, no table of ours
	}
	return nft.NewLayer(nft.Exec{}, log).Uninstall(ctx)
}

// firewalldFindings tell audit's reader what firewalld does here, and on
// an iptables host (layer) whether dockmoat's second layer is installed.
func firewalldFindings(ctx context.Context, log logrus.FieldLogger, layer bool) []string {
	bus, err := firewalld.Connect()
	if err != nil {
		return nil
	}
	defer bus.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if running, _ := bus.Running(cctx); !running {
		return nil
	}
	st, err := bus.Read(cctx)
	if err != nil {
		log.WithError(err).Warn("firewalld runs but its state could not be read")
		return []string{"firewalld runs; its zones could not be read: " + err.Error()}
	}
	out := st.Describe()
	if layer {
		listing, err := nft.Exec{}.List(cctx)
		switch {
		case err != nil:
			out = append(out, "table inet dockmoat (dockmoat's layer under firewalld) could not be read: "+err.Error())
		case !listing.Exists():
			out = append(out, "table inet dockmoat (dockmoat's layer under firewalld) is MISSING: a firewalld reload can open published ports until dockmoat puts its iptables rules back; is dockmoat running?")
		default:
			out = append(out, "table inet dockmoat (dockmoat's layer under firewalld) installed")
		}
	}
	return out
}
