package ipt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
)

// Rate limits (rules/limit.go) are hashlimit rules: one per limited
// binding, after the deny lists and the trusted sources and before the
// allows, in DOCKMOAT-INGRESS (DNATed connections) and DOCKMOAT-INPUT
// (docker-proxy). A connection beyond the rate is refused like a denied
// source: dropped on the forward path, not let through (so
// DOCKMOAT-INPUT-CHECK drops it) on the input path. Each rule keeps its
// own table of sources (its --hashlimit-name); a source is forgotten
// only once its allowance has refilled, so forgetting it changes
// nothing. The rule's packet counter is the refusals.

// limitRules adds the family's limits to ch: forward for INGRESS, else
// the docker-proxy form for DOCKMOAT-INPUT.
func limitRules(ch *OwnedChain, limits []rules.Limit, fam rules.Family, forward bool) {
	for _, l := range limits {
		b := l.Binding
		var spec []string
		if forward {
			spec = []string{"-p", b.Proto, "-m", "conntrack", "--ctstate", "DNAT"}
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				spec = append(spec, "--ctorigdst", b.HostIP.Unmap().String()+bits(fam))
			}
			spec = append(spec, "--ctorigdstport", strconv.Itoa(int(b.HostPort)))
		} else {
			spec = proxySpec(b, fam)
		}
		spec = append(spec, hashlimit(l, fam)...)
		verdict := "DROP"
		if !forward {
			verdict = "RETURN"
		}
		ch.add(l.Desc(!forward), append(spec, "-j", verdict)...)
	}
}

// hashlimit matches a source's new connections beyond the limit.
func hashlimit(l rules.Limit, fam rules.Family) []string {
	unit := map[time.Duration]string{time.Second: "sec", time.Minute: "min", time.Hour: "hour"}[l.Rate.Per]
	mask := "32"
	if fam == rules.IPv6 {
		mask = "64"
	}
	expire := max(l.Rate.Refill(), time.Second)
	return []string{"-m", "hashlimit", "--hashlimit-above", fmt.Sprintf("%d/%s", l.Rate.Rate, unit),
		"--hashlimit-burst", strconv.Itoa(int(l.Rate.Burst)), "--hashlimit-mode", "srcip", "--hashlimit-srcmask", mask,
		"--hashlimit-htable-expire", strconv.FormatInt(expire.Milliseconds(), 10), "--hashlimit-name", limitName(l, fam)}
}

// limitName names a limit's table of sources: at most 15 characters (the
// kernel's limit), distinct per family, binding and rate, so that two
// rules never share a table with different settings.
func limitName(l rules.Limit, fam rules.Family) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%d %s %s %d %s", fam, l.Binding.Proto, l.Binding.HostIP, l.Binding.HostPort, l.Rate))
	return "dm-" + hex.EncodeToString(h[:])[:12]
}

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
		for _, name := range []string{ChainIngress, ChainInput} {
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
