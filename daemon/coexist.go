package daemon

import (
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/audit"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
)

// coexistenceWarner logs, when they appear or change, what other rules in
// DOCKER-USER do now that dockmoat's hook comes first (audit.Coexistence).
func coexistenceWarner(log logrus.FieldLogger) func(netfilter.SyncResult, error, time.Duration) {
	last := ""
	return func(res netfilter.SyncResult, err error, _ time.Duration) {
		if err != nil {
			return
		}
		var found []string
		for _, p := range res.Plans {
			if !p.Layer && p.Skipped == "" {
				found = append(found, audit.Coexistence(p.Family, iptplan.DetailOf(p).Observed.DockerUser)...)
			}
		}
		if now := strings.Join(found, "\n"); now != last {
			last = now
			for _, f := range found {
				log.Warn(f)
			}
		}
	}
}
