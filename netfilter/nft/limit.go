package nft

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os/exec"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// Rate limits (rules/limit.go), as on the iptables path (netfilter/ipt's
// limit.go): one rule per limited binding, after the deny lists and the
// trusted sources and before the allows, in ingress and in input. Each
// keeps its sources in a dynamic set of its own (a meter) whose elements
// carry the limit's state; an element times out only once its allowance
// has refilled, so forgetting it changes nothing. The sets' elements are
// the kernel's, not the policy's: a pass never compares or rewrites them
// (they are in Ruleset.Meters, not Ruleset.Sets), and a table swap
// starts them empty, which only forgets recent connections. The rule's
// counter is the refusals.

// Meter is a limit's dynamic set.
type Meter struct {
	Name, Type string
	Timeout    int // seconds
}

// limitRules adds both families' limits to ch: forward for ingress, else
// the docker-proxy form for input.
func limitRules(ch *Chain, rs *Ruleset, res [2]policy.Result, forward bool) {
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, l := range res[i].Limits {
			b := l.Binding
			m := meter(l, fam)
			if forward {
				rs.Meters = append(rs.Meters, m)
			}
			key := nftAddr(fam) + " saddr"
			if fam == rules.IPv6 {
				key += " & ffff:ffff:ffff:ffff::"
			}
			update := fmt.Sprintf("update @%s { %s limit rate over %d/%s burst %d packets } counter", m.Name, key, l.Rate.Rate, l.Rate.Unit(), l.Rate.Burst)
			var match, verdict string
			if forward {
				match = "meta l4proto " + b.Proto + " ct status dnat "
				if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
					match += fmt.Sprintf("ct original %s daddr %s ", nftAddr(fam), b.HostIP.Unmap())
				}
				match += fmt.Sprintf("ct original proto-dst %d ", b.HostPort)
				verdict = "drop"
			} else {
				match, verdict = nftProxyMatch(b, fam)+" ", "return"
			}
			ch.add(l.Desc(!forward), match+update+" "+verdict)
		}
	}
}

// meter is the dynamic set of a limit: named per family, binding and
// rate; the forward and input rules of a binding share it.
func meter(l rules.Limit, fam rules.Family) Meter {
	h := sha256.Sum256(fmt.Appendf(nil, "%d %s %s %d %s", fam, l.Binding.Proto, l.Binding.HostIP, l.Binding.HostPort, l.Rate))
	typ := "ipv4_addr"
	if fam == rules.IPv6 {
		typ = "ipv6_addr"
	}
	return Meter{Name: "limit_" + hex.EncodeToString(h[:])[:12], Type: typ, Timeout: max(1, int(math.Ceil(l.Rate.Refill().Seconds())))}
}

// writeMeters declares the meters in the table's text.
func writeMeters(b *strings.Builder, ms []Meter) {
	for _, m := range ms {
		fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout %ds\n\t}\n", m.Name, m.Type, m.Timeout)
	}
}

// OwnLister lists table inet dockmoat as data, with its counters.
type OwnLister interface {
	ListOwn(ctx context.Context) (*nftjson.Ruleset, error)
}

// ListOwn implements OwnLister.
func (e Exec) ListOwn(ctx context.Context) (*nftjson.Ruleset, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.bin(), "-j", "list", "table", TableFamily, TableName)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nft -j list table %s %s: %w: %s", TableFamily, TableName, err, strings.TrimSpace(stderr.String()))
	}
	return nftjson.Parse(out.Bytes())
}

// LimitRefusals implements netfilter.LimitCounter: the counters of the
// limit rules in table inet dockmoat (both families share them).
func (b *Backend) LimitRefusals(ctx context.Context) ([]netfilter.LimitRefusal, error) {
	l, ok := b.nft.(OwnLister)
	if !ok || b.bridgeOnly {
		return nil, nil
	}
	live, err := l.ListOwn(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the rate limits' counters: %w", err)
	}
	return liveLimits(live), nil
}

// liveLimits reads the limit rules' counters from a listing.
func liveLimits(live *nftjson.Ruleset) []netfilter.LimitRefusal {
	var out []netfilter.LimitRefusal
	for _, ch := range live.Chains {
		for _, r := range ch.Rules {
			_, desc, _ := strings.Cut(r.Comment, " ")
			port, container, proxy, ok := rules.ParseLimitDesc(desc)
			if !ok {
				continue
			}
			fam, pkts := rules.IPv4, uint64(0)
			for _, st := range r.Expr {
				if c, ok := st["counter"].(map[string]any); ok {
					n, _ := c["packets"].(float64)
					pkts = uint64(n)
				}
				if s, ok := st["set"].(map[string]any); ok && strings.Contains(fmt.Sprint(s["elem"]), "ip6") {
					fam = rules.IPv6
				}
			}
			out = append(out, netfilter.LimitRefusal{Family: fam, Port: port, Container: container, Proxy: proxy, Packets: pkts})
		}
	}
	return out
}
