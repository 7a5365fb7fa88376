package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/integration/testbed"
	"github.com/dockmoat/dockmoat/reconciler"
)

// The sources part (issue 29): the packet path with the tested port open
// to a 10,000-source list (the client among them), and with 10,000
// addresses in the ban set (the client not among them), next to no rules;
// and what a refresh of that list costs a pass (the sources replaced).

const bigN = 10000

// bigList is n-1 /32 sources, moved by shift, and the client's.
func bigList(n, shift int) []config.Source {
	out := []config.Source{netip.MustParsePrefix(ppClient + "/32")}
	for i := 0; i < n-1; i++ {
		j := i + shift
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + byte(j>>16), byte(j >> 8), byte(j)}), 32))
	}
	return out
}

// listed is the config with list big.
func listed(shift int) config.Config {
	cfg := config.Default()
	cfg.Lists = map[string][]config.Source{"big": bigList(bigN, shift)}
	return cfg
}

type srcMode struct {
	name string
	nft  bool
	ban  bool // 10,000 banned sources; else the 10,000-source list
}

var srcModes = []srcMode{
	{name: "iptables: from a 10,000-source list"},
	{name: "iptables: 10,000 banned sources", ban: true},
	{name: "nftables backend: from a 10,000-source list", nft: true},
	{name: "nftables backend: 10,000 banned sources", nft: true, ban: true},
}

// installSources installs one mode in the router.
func (t *topo) installSources(m srcMode, log logrus.FieldLogger) (*reconciler.Reconciler, error) {
	snap := packetSnapshot(100)
	zzz := &snap.Containers[len(snap.Containers)-1]
	if !m.ban {
		zzz.Labels = map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "list:big"}
	}
	rec, err := t.installWith(ppMode{name: m.name, nft: m.nft, sets: true}, listed(0), snap, log)
	if err != nil || !m.ban {
		return rec, err
	}
	return rec, t.fillBans(m.nft)
}

// fillBans puts bigN addresses (not the client's) in the ban set, as
// fail2ban or CrowdSec would.
func (t *topo) fillBans(nftables bool) error {
	var b strings.Builder
	tool := []string{"ipset", "restore"}
	if nftables {
		b.WriteString("add element inet dockmoat_ban ban4 { ")
		tool = []string{"nft", "-f", "-"}
	}
	for i := 0; i < bigN; i++ {
		a := netip.AddrFrom4([4]byte{10, 200 + byte(i>>16), byte(i >> 8), byte(i)})
		if nftables {
			fmt.Fprintf(&b, "%s, ", a)
		} else {
			fmt.Fprintf(&b, "add dockmoat-ban4 %s\n", a)
		}
	}
	if nftables {
		b.WriteString("}\n")
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", t.router}, tool...)...)
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("filling the ban set: %w: %s", err, out)
	}
	if !t.reachable(t.open) {
		return fmt.Errorf("the client is not banned, but 8080 does not answer")
	}
	return nil
}

// refreshCost times passes after a refresh that replaces one source of
// the list (shifting by one: one element out, one in; the policy is
// decided again).
func (t *topo) refreshCost(nftables bool, log logrus.FieldLogger) (stat, error) {
	rec, err := t.installSources(srcMode{nft: nftables}, log)
	if err != nil {
		return stat{}, err
	}
	defer func() { _ = t.uninstall(rec) }()
	i := 0
	return measure(*reps, func() (time.Duration, error) {
		i++
		cfg := listed(i % 2)
		var took time.Duration
		err := testbed.InNetns("/run/netns/"+t.router, func() error {
			start := time.Now()
			rec.SetConfig(cfg)
			_, err := rec.Sync(context.Background())
			took = time.Since(start)
			return err
		})
		return took, err
	})
}

// sourceRates measures the baseline and each mode, interleaved.
func (t *topo) sourceRates(d time.Duration, log logrus.FieldLogger) ([]float64, [][]float64, error) {
	base, modes := []float64{}, make([][]float64, len(srcModes))
	for rep := 0; rep < *reps; rep++ {
		r, err := t.rate(d)
		if err != nil {
			return nil, nil, err
		}
		base = append(base, r)
		for i, m := range srcModes {
			rec, err := t.installSources(m, log)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", m.name, err)
			}
			r, err := t.rate(d)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", m.name, err)
			}
			modes[i] = append(modes[i], r)
			if err := t.uninstall(rec); err != nil {
				return nil, nil, err
			}
		}
	}
	return base, modes, nil
}

func sourcesPath(b *strings.Builder) error {
	t, log, err := warmTopo()
	if err != nil {
		return err
	}
	defer t.Close()
	const d = 2 * time.Second
	base, modes, err := t.sourceRates(d, log)
	if err != nil {
		return err
	}
	var refresh [2]stat
	for i, nftables := range []bool{false, true} {
		if refresh[i], err = t.refreshCost(nftables, log); err != nil {
			return err
		}
	}
	fmt.Fprintln(os.Stderr, "sources done")
	b.WriteString("## Sources: a 10,000-source list and a 10,000-address ban set\n\n")
	fmt.Fprintf(b, "The packet path above (%s per run, interleaved with the baseline), with 100 allowed ports and the tested port open only "+
		"to a list of 10,000 sources (the client among them: its allows are 10,000 set elements), or open to everyone with 10,000 "+
		"addresses in the ban set (`ipset restore` or `nft add element`, as fail2ban or CrowdSec would; the client not among them). "+
		"Goal: ≥ 0.95× of no rules.\n\n", d)
	baseR := minMedMax(base)
	b.WriteString("| policy | baseline: no rules | with dockmoat | ratio |\n|---|---|---|---|\n")
	for i, m := range srcModes {
		r := minMedMax(modes[i])
		fmt.Fprintf(b, "| %s | %s | %s | %.2f× |\n", m.name, rates(baseR), rates(r), r[1]/baseR[1])
	}
	b.WriteString("\nA refresh of the list that replaces one of its 10,000 sources (the config read again, so the policy is decided afresh, " +
		"and the set elements changed): one pass, timed from the new config to the firewall written.\n\n")
	fmt.Fprintf(b, "| backend | pass after a list refresh |\n|---|---|\n| iptables (ipsets) | %s |\n| nftables backend | %s |\n\n", refresh[0], refresh[1])
	return nil
}
