package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipset"
	"github.com/dockmoat/dockmoat/netfilter/ipt"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/nft"
	"github.com/dockmoat/dockmoat/rules"
)

// banned reads the ban sets of the backend in use, by set name: the
// sources refused on every published port (nil when it has none).
func banned(ctx context.Context, b netfilter.Backend) map[string][]string {
	if l, ok := b.(netfilter.Layered); ok {
		b = l.Main
	}
	switch b.(type) {
	case *nft.Backend:
		live, err := nft.Exec{}.ListRuleset(ctx)
		if err != nil {
			return nil
		}
		return nft.Banned(live)
	case *ipt.Backend:
		sets, err := ipset.Open()
		if err != nil {
			return nil
		}
		defer sets.Close()
		out := map[string][]string{}
		for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			if nets, ok, err := sets.ListNets(iptplan.BanSet(fam)); err == nil && ok {
				elems := []string{}
				for _, p := range nets {
					elems = append(elems, p.String())
				}
				out[iptplan.BanSet(fam)] = elems
			}
		}
		return out
	}
	return nil
}

// writeBanned says, for plan, who is banned from every published port.
func writeBanned(out io.Writer, bans map[string][]string) {
	for _, name := range []string{"dockmoat-ban4", "dockmoat-ban6", "ban4", "ban6"} {
		elems, ok := bans[name]
		if !ok {
			continue
		}
		shown := elems
		if len(shown) > 20 {
			shown = shown[:20]
		}
		more := ""
		if len(elems) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(elems)-len(shown))
		}
		fmt.Fprintf(out, "banned from every published port (set %s): %d source(s)", name, len(elems))
		if len(elems) > 0 {
			fmt.Fprintf(out, ": %s%s", strings.Join(shown, ", "), more)
		}
		fmt.Fprintln(out)
	}
}
