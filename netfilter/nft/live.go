package nft

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// Live is a whole nftables ruleset as `nft -j list ruleset` gives it, kept
// as data: every table's chains (base chains with their hook, priority
// and policy), their rules as libnftables' JSON expressions, and the sets
// and maps. ParseJSON (dockmoat's own table) and audit's evaluation of
// every table read it from here: one reader of nft's output.
type Live struct {
	Chains []*LiveChain // in listing order
	Sets   map[string]*LiveSet
}

// LiveChain is one chain; Hook is "" for a regular chain.
type LiveChain struct {
	Family, Table, Name string
	Type, Hook, Policy  string
	Prio                int
	Rules               []LiveRule
}

// Label names the chain for reports: "inet dockmoat/forward".
func (c *LiveChain) Label() string { return c.Family + " " + c.Table + "/" + c.Name }

// LiveRule is one rule: its statements (matches and verdicts) as decoded
// JSON objects, and its comment.
type LiveRule struct {
	Expr    []map[string]any
	Comment string
}

// LiveSet is a named set or map. Elems are decoded JSON values; a map's
// are [key, value] pairs.
type LiveSet struct {
	Family, Table, Name string
	Map                 string // the value type of a map ("verdict"…), "" for a set
	Elems               []any
}

// SetKey is how Sets are keyed: a set's name is scoped by its table.
func SetKey(family, table, name string) string { return family + " " + table + " " + name }

// ListRuleset reads the whole ruleset: `nft -j list ruleset`.
func (e Exec) ListRuleset(ctx context.Context) (*Live, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.bin(), "-j", "list", "ruleset")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nft -j list ruleset: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return ParseRuleset(out.Bytes())
}

// jsonRuleset is the part of libnftables' JSON schema dockmoat reads.
type jsonRuleset struct {
	Nftables []struct {
		Chain *struct {
			Family, Table, Name, Type, Hook, Policy string
			Prio                                    int
		} `json:"chain"`
		Rule *struct {
			Family, Table, Chain, Comment string
			Expr                          []map[string]any `json:"expr"`
		} `json:"rule"`
		Set *jsonSet `json:"set"`
		Map *jsonSet `json:"map"`
	} `json:"nftables"`
}

type jsonSet struct {
	Family, Table, Name string
	Map                 string `json:"map"`
	Elem                []any  `json:"elem"`
}

// ParseRuleset reads `nft -j list ruleset` (or `list table …`) output.
func ParseRuleset(data []byte) (*Live, error) {
	var doc jsonRuleset
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("reading nft's JSON listing: %w", err)
	}
	l := &Live{Sets: map[string]*LiveSet{}}
	byName := map[string]*LiveChain{}
	for _, o := range doc.Nftables {
		switch {
		case o.Chain != nil:
			c := o.Chain
			ch := &LiveChain{Family: c.Family, Table: c.Table, Name: c.Name, Type: c.Type, Hook: c.Hook, Policy: c.Policy, Prio: c.Prio}
			l.Chains = append(l.Chains, ch)
			byName[SetKey(c.Family, c.Table, c.Name)] = ch
		case o.Rule != nil:
			r := o.Rule
			if ch := byName[SetKey(r.Family, r.Table, r.Chain)]; ch != nil {
				ch.Rules = append(ch.Rules, LiveRule{Expr: r.Expr, Comment: r.Comment})
			}
		case o.Set != nil || o.Map != nil:
			s := o.Set
			if s == nil {
				s = o.Map
			}
			l.Sets[SetKey(s.Family, s.Table, s.Name)] = &LiveSet{Family: s.Family, Table: s.Table, Name: s.Name, Map: s.Map, Elems: s.Elem}
		}
	}
	return l, nil
}

// Chain returns a chain of a table.
func (l *Live) Chain(family, table, name string) *LiveChain {
	for _, c := range l.Chains {
		if c.Family == family && c.Table == table && c.Name == name {
			return c
		}
	}
	return nil
}

// Banned lists the elements of the ban table's sets (BanTable: ban4,
// ban6), as nft writes them, by set name.
func (l *Live) Banned() map[string][]string {
	out := map[string][]string{}
	for _, name := range []string{"ban4", "ban6"} {
		s := l.Sets[SetKey(TableFamily, BanTable, name)]
		if s == nil {
			continue
		}
		elems := []string{}
		for _, e := range s.Elems {
			elems = append(elems, valueText(e))
		}
		out[name] = elems
	}
	return out
}
