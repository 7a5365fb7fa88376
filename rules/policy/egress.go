package policy

import (
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// addEgress puts a family's egress policies, their problems and the
// resolvers Docker queries from the host into res (Build, Incremental).
func addEgress(res *Result, cfg config.Config, snap rules.Snapshot) {
	eg, problems := rules.DecideEgress(cfg, snap, res.Family)
	res.Egress, res.Problems = eg, append(res.Problems, problems...)
	if len(eg) > 0 {
		res.DNSFromHost = rules.DNSFromHost(cfg, snap)
	}
}
