package nft

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/nft/nftplan"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
)

// OwnLister lists table inet dockmoat as data, with its counters.
type OwnLister interface {
	ListOwn(ctx context.Context) (*nftjson.Ruleset, error)
}

// ListOwn implements OwnLister.
func (e Exec) ListOwn(ctx context.Context) (*nftjson.Ruleset, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.bin(), "-j", "list", "table", nftplan.TableFamily, nftplan.TableName)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nft -j list table %s %s: %w: %s", nftplan.TableFamily, nftplan.TableName, err, strings.TrimSpace(stderr.String()))
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
