package ipt

import (
	"context"
	"fmt"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
)

// CounterSaver is a Restorer that can list a table with its counters
// (`iptables-save -c`).
type CounterSaver interface {
	SaveCounters(ctx context.Context, table string) ([]byte, error)
}

// SaveCounters implements CounterSaver.
func (e Exec) SaveCounters(ctx context.Context, table string) ([]byte, error) {
	return e.save(ctx, "-c", "-t", table)
}

// LimitRefusals implements netfilter.LimitCounter: the packet counters of
// the limit rules in DOCKMOAT-INGRESS and DOCKMOAT-INPUT, per family.
func (b *Backend) LimitRefusals(ctx context.Context) ([]netfilter.LimitRefusal, error) {
	var out []netfilter.LimitRefusal
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		t := b.families[fam]
		if t == nil {
			continue
		}
		cs, ok := t.Restorer.(CounterSaver)
		if !ok {
			continue
		}
		data, err := cs.SaveCounters(ctx, "filter")
		if err != nil {
			return out, fmt.Errorf("reading the rate limits' counters: %w", err)
		}
		filter := iptsave.Parse(data)["filter"]
		if filter == nil {
			continue
		}
		for _, name := range []string{iptplan.ChainIngress, iptplan.ChainInput} {
			ch := filter.Chains[name]
			if ch == nil {
				continue
			}
			for _, r := range ch.Rules {
				if port, container, proxy, ok := rules.ParseLimitDesc(commentOf(r)); ok {
					out = append(out, netfilter.LimitRefusal{Family: fam, Port: port, Container: container, Proxy: proxy, Packets: r.Packets})
				}
			}
		}
	}
	return out, nil
}

// commentOf is the description in a rule's dockmoat comment.
func commentOf(r iptsave.Rule) string {
	for i := 0; i+1 < len(r.Args); i++ {
		if r.Args[i] == "--comment" {
			_, desc, _ := strings.Cut(r.Args[i+1], " ")
			return desc
		}
	}
	return ""
}
