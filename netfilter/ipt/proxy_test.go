package ipt

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// On a host where Docker does not manage IPv6 (no DOCKER-USER there),
// dockmoat still closes the proxy path: DOCKMOAT-INPUT and one jump at
// the top of INPUT, nothing else of ip6tables touched; the chain and jump
// go when no binding needs them, and drift of the jump is repaired.
func TestProxyPathInputOnly(t *testing.T) {
	r := newRig(t, config.Default())
	r.v6.Append("INPUT", sshRule)
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		rulestest.Dual("db", 5432, nil), rulestest.Dual("web", 8080, map[string]string{"dockmoat.allow": "8080"})}})
	r.sync(t)
	in := r.v6.Rules("INPUT")
	if len(in) != 3 || !strings.Contains(in[0], "dockmoat:input") || !strings.Contains(in[1], "dockmoat:input-check") || in[2] != sshRule {
		t.Fatalf("ip6tables INPUT = %q; want the jump and its check first, then the admin's rule", in)
	}
	chain := strings.Join(r.v6.Rules(iptplan.ChainInput), "\n")
	for _, want := range []string{"--dport 8080 -m comment --comment \"dockmoat:", "--dports 5432,8080", "-j DROP"} {
		if !strings.Contains(chain, want) {
			t.Errorf("DOCKMOAT-INPUT lacks %q:\n%s", want, chain)
		}
	}
	if r.v6.HasChain(iptplan.ChainMain) || r.v6.HasChain(iptplan.ChainIngress) {
		t.Error("no DOCKER-USER in ip6tables: the forward chains must not be created")
	}
	r.inSync(t)

	// Someone deletes the jump: the next pass reports and puts it back.
	if err := r.v6.Delete("filter", "INPUT", iptplan.InputHookSpec()...); err != nil {
		t.Fatal(err)
	}
	res := r.sync(t)
	if !slices.Contains(res.Drift, "ipv6: input hook missing") {
		t.Errorf("drift not reported: %v", res.Drift)
	}
	r.inSync(t)

	// Nothing served by docker-proxy any more: chain and jump go.
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2")}})
	r.sync(t)
	if r.v6.HasChain(iptplan.ChainInput) || !slices.Equal(r.v6.Rules("INPUT"), []string{sshRule}) {
		t.Errorf("after the last proxied port left: INPUT %q, chain left %v", r.v6.Rules("INPUT"), r.v6.HasChain(iptplan.ChainInput))
	}
	r.inSync(t)
}

func TestProxyPathUninstall(t *testing.T) {
	r := newRig(t, config.Default())
	r.v6.Append("INPUT", sshRule)
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Dual("db", 5432, nil)}})
	r.sync(t)
	if err := r.b.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	save, _ := r.v6.Save(context.Background(), "filter")
	if strings.Contains(string(save), "DOCKMOAT") || !slices.Equal(r.v6.Rules("INPUT"), []string{sshRule}) {
		t.Errorf("uninstall left:\n%s", save)
	}
}

// One failure never freezes the rest: when the sets cannot be written,
// the chains (a new network, the deny) are still applied; when one
// family fails, the other is still reconciled.
func TestFailureDoesNotFreezeTheRest(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	fs.FailAdd = errors.New("set full")
	r.set(rules.Snapshot{Bridges: []string{"docker0", "br-0123456789ab"}, Containers: []rules.Container{rulestest.Web("172.17.0.9")}})
	if _, err := r.try(); err == nil || !strings.Contains(err.Error(), "set full") {
		t.Fatalf("want the set error, got %v", err)
	}
	if main := strings.Join(r.v4.Rules(iptplan.ChainMain), "\n"); !strings.Contains(main, "-o br-0123456789ab") {
		t.Errorf("the new network's rules were not applied after the set failure:\n%s", main)
	}
	fs.FailAdd = nil

	// IPv4's batch fails; IPv6 (docker-proxy path) is still applied.
	r.v4.FailRestore = errors.New("iptables-restore: line 3 failed")
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Dual("db", 5432, nil)}})
	_, err := r.try()
	if err == nil || !strings.Contains(err.Error(), "ipv4") {
		t.Fatalf("want the IPv4 error, got %v", err)
	}
	if !r.v6.HasChain(iptplan.ChainInput) {
		t.Error("IPv6 was not reconciled because IPv4 failed")
	}
	r.v4.FailRestore = nil
	r.sync(t)
	r.inSync(t)
}

const sshRule = "-p tcp -m tcp --dport 22 -j ACCEPT"
