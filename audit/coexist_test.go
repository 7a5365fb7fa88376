package audit

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/rules"
)

// TestCoexistence: the ufw-docker recipe and a user's ACCEPT below
// dockmoat's hook are each said with what to do; dockmoat's own rules,
// Docker's RETURN and other foreign rules are not.
func TestCoexistence(t *testing.T) {
	lines := []string{
		`-A DOCKER-USER -m comment --comment dockmoat:hook -j DOCKMOAT`,
		`-A DOCKER-USER -m conntrack --ctstate NEW -m comment --comment dockmoat:check -j DOCKMOAT-CHECK`,
		`-A DOCKER-USER -j ufw-user-forward`,
		`-A DOCKER-USER -s 10.0.0.0/8 -j ACCEPT`,
		`-A DOCKER-USER -s 192.0.2.99/32 -j DROP`,
		`-A DOCKER-USER -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -d 172.16.0.0/12 -j ufw-docker-logging-deny`,
		`-A DOCKER-USER -j RETURN`,
	}
	got := Coexistence(rules.IPv4, lines)
	if len(got) != 2 || !strings.Contains(got[0], "ufw-docker after.rules recipe") || !strings.Contains(got[1], `"-s 10.0.0.0/8 -j ACCEPT"`) ||
		!strings.Contains(got[1], "trusted_sources") {
		t.Errorf("%d findings:\n%s", len(got), strings.Join(got, "\n"))
	}
	if got := Coexistence(rules.IPv4, []string{lines[0], lines[4], lines[6]}); len(got) != 0 {
		t.Errorf("nothing to say, yet: %q", got)
	}
}
