package audit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
)

// Coexistence: what other people's rules in DOCKER-USER do now that
// dockmoat's hook comes first there. The ufw-docker recipe (its
// after.rules send DOCKER-USER through ufw-user-forward and drop new
// connections to private addresses) still drops what a dockmoat label
// opens unless a `ufw route allow` rule matches; a user's own ACCEPT comes
// after dockmoat's verdicts and opens nothing dockmoat closes. Both are
// said with what to do (audit's findings, and the daemon's log).

// ufwDockerChains are the chains the ufw-docker recipe jumps to from
// DOCKER-USER.
var ufwDockerChains = []string{"ufw-user-forward", "ufw-docker-logging-deny"}

// Coexistence reads DOCKER-USER's rules (iptables-save lines) of a family
// and returns a finding for each foreign rule whose effect changed.
func Coexistence(fam rules.Family, dockerUser []string) []string {
	var out []string
	recipe := false
	for _, l := range dockerUser {
		rule := strings.TrimSpace(strings.TrimPrefix(l, "-A "+iptplan.HookChain))
		switch {
		case strings.Contains(l, iptplan.HookComment) || strings.Contains(l, iptplan.CheckComment) || rule == "-j RETURN":
		case jumpsTo(rule, ufwDockerChains...):
			recipe = true
		case jumpsTo(rule, "ACCEPT"):
			out = append(out, fmt.Sprintf("%s: DOCKER-USER rule %q comes after dockmoat's hook: it no longer opens a published port dockmoat closes; "+
				"put its sources in trusted_sources, or an allow rule in the config file, and delete it", fam, rule))
		}
	}
	if recipe {
		out = append([]string{fmt.Sprintf("%s: the ufw-docker after.rules recipe is installed (DOCKER-USER jumps to ufw-user-forward): "+
			"after dockmoat lets a connection through, the recipe still drops it unless a `ufw route allow` rule matches, so a dockmoat label alone "+
			"opens nothing. Remove the recipe's block (BEGIN UFW AND DOCKER … END UFW AND DOCKER) from /etc/ufw/after.rules and delete its rules "+
			"from DOCKER-USER (`iptables -D DOCKER-USER -j ufw-user-forward`, and each rule that jumps to ufw-docker-logging-deny), or reboot; "+
			"dockmoat keeps `ufw route allow` rules working with ufw: auto. Or keep a ufw route rule per port", fam)}, out...)
	}
	return out
}

func jumpsTo(rule string, targets ...string) bool {
	f := strings.Fields(rule)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && slices.Contains(targets, f[i+1]) {
			return true
		}
	}
	return false
}
