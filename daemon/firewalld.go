package daemon

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/firewalld"
	"github.com/dockmoat/dockmoat/reconciler"
)

// watchFirewalld repairs right after each firewalld reload or restart
// (firewalld emptied iptables; Docker puts its chains back on the same
// signal, and the drift watch catches whatever comes after), then asks
// for a pass. Without a bus it does nothing.
func watchFirewalld(ctx context.Context, rec *reconciler.Reconciler, layered bool, log logrus.FieldLogger, poke func()) {
	bus, err := firewalld.Connect()
	if err != nil {
		return
	}
	defer bus.Close()
	err = bus.Watch(ctx, func(reason string) {
		if reason == "firewalld started" && !layered {
			log.Warn("firewalld started after dockmoat: restart dockmoat so that it keeps the policy in table inet dockmoat too (firewalld empties iptables on every reload)")
		}
		// Docker recreates DOCKER-USER on the same signal: until it has,
		// the hook cannot go back, and the drift watch retries.
		found, err := rec.RepairLast(ctx)
		e := log.WithFields(logrus.Fields{"reason": reason, "found": found})
		if err != nil {
			e = e.WithError(err)
		}
		e.Info("firewalld changed; dockmoat's rules checked and put back where Docker's chains allow")
		poke()
	})
	if err != nil {
		log.WithError(err).Warn("not following firewalld's reloads; drift detection still repairs after them")
	}
}
