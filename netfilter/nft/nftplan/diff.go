package nftplan

import (
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/setelem"
)

// TableDiff lists what of the wanted table differs from the installed
// one: chains by rule hash, then sets by their elements.
func TableDiff(rs Ruleset, owned, installed map[string][]string) []string {
	var changed []string
	all := rs.All()
	for _, name := range netfilter.ChangedChains(all, owned) {
		if !strings.Contains(name, "/") {
			name = "inet dockmoat/" + name
		}
		changed = append(changed, name)
	}
	if len(owned) != len(all) && len(changed) == 0 {
		changed = append(changed, "inet dockmoat (extra chains)")
	}
	for _, set := range rs.Sets {
		got, ok := installed[set.Name]
		missing, extra := setelem.Diff(set.Elems, setelem.Index(got))
		if !ok || len(missing) > 0 || len(extra) > 0 {
			changed = append(changed, "inet dockmoat/set "+set.Name)
		}
	}
	return changed
}

// SetDrift names the sets whose elements differ from those installed (a
// flushed set closes what it allowed, until the repair puts it back).
func SetDrift(rs Ruleset, listing Listing) []string {
	var out []string
	for _, c := range TableDiff(Ruleset{Sets: rs.Sets}, nil, listing.Sets) {
		if name, ok := strings.CutPrefix(c, "inet dockmoat/set "); ok {
			out = append(out, rules.IPv4.String()+": set "+name+" edited")
		}
	}
	return out
}
