package nftplan

import (
	"maps"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
)

// Listing is what the kernel holds of table inet dockmoat, its check
// table (chains named "dockmoat_check/CHAIN") and table bridge dockmoat
// ("bridge dockmoat/CHAIN"): per chain the
// hashes of its rules in order ("" for a rule without dockmoat's comment:
// someone else's rule in our chain), per set its elements as nft writes
// them in a script ("172.17.0.2 . tcp . 80").
type Listing struct {
	Chains map[string][]string
	Sets   map[string][]string
}

// Exists reports whether the table exists.
func (l Listing) Exists() bool {
	for name := range l.Chains {
		if !strings.Contains(name, "/") {
			return true
		}
	}
	return false
}

// Merge adds another listing's chains and sets.
func (l *Listing) Merge(o Listing) {
	if l.Chains == nil {
		l.Chains, l.Sets = map[string][]string{}, map[string][]string{}
	}
	maps.Copy(l.Chains, o.Chains)
	maps.Copy(l.Sets, o.Sets)
}

// ParseJSON reads `nft -j list table inet dockmoat` output (see nftjson.Ruleset).
func ParseJSON(data []byte) (Listing, error) {
	live, err := nftjson.Parse(data)
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Chains: map[string][]string{}, Sets: map[string][]string{}}
	for _, c := range live.Chains {
		var name string
		switch {
		case c.Family == TableFamily && c.Table == TableName:
			name = c.Name
		case c.Family == TableFamily && c.Table == CheckTable:
			name = CheckTable + "/" + c.Name
		case c.Family == TableFamily && c.Table == BanTable:
			name = BanTable + "/" + c.Name
		case c.Family == BridgeFamily && c.Table == BridgeName:
			name = BridgeKey + "/" + c.Name
		default:
			continue
		}
		hashes := []string{}
		for _, r := range c.Rules {
			hashes = append(hashes, ruleHash(r.Comment))
		}
		l.Chains[name] = hashes
	}
	for _, s := range live.Sets {
		if s.Family != TableFamily || s.Table != TableName {
			continue
		}
		elems := []string{}
		for _, e := range s.Elems {
			elems = append(elems, nftjson.ValueText(e))
		}
		l.Sets[s.Name] = elems
	}
	return l, nil
}

// ruleHash is the hash in a dockmoat comment ("dockmoat:<16 hex> …").
func ruleHash(comment string) string {
	rest, ok := strings.CutPrefix(comment, rules.CommentPrefix)
	if !ok || len(rest) < 16 {
		return ""
	}
	return rest[:16]
}
