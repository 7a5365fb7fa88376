// Package nftjson owns nft's JSON listing format (`nft -j list …`):
// it reads a ruleset, or any part of one, into data (tables' chains with
// their hooks and priorities, rules as libnftables' JSON expressions,
// sets and maps). The nftables backend reads its own tables from it and
// audit/nfteval evaluates the whole ruleset from it: one reader of nft's
// output, no exec, no knowledge of dockmoat's tables.
package nftjson

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Ruleset is a whole nftables ruleset as `nft -j list ruleset` gives it,
// kept as data: every table's chains (base chains with their hook,
// priority and policy), their rules as libnftables' JSON expressions, and
// the sets and maps.
type Ruleset struct {
	Chains []*Chain // in listing order
	Sets   map[string]*Set
}

// Chain is one chain; Hook is "" for a regular chain.
type Chain struct {
	Family, Table, Name string
	Type, Hook, Policy  string
	Prio                int
	Rules               []Rule
}

// Label names the chain for reports: "inet dockmoat/forward".
func (c *Chain) Label() string { return c.Family + " " + c.Table + "/" + c.Name }

// Rule is one rule: its statements (matches and verdicts) as decoded
// JSON objects, and its comment.
type Rule struct {
	Expr    []map[string]any
	Comment string
}

// Set is a named set or map. Elems are decoded JSON values; a map's
// are [key, value] pairs.
type Set struct {
	Family, Table, Name string
	Map                 string // the value type of a map ("verdict"…), "" for a set
	Elems               []any
}

// SetKey is how Sets are keyed: a set's name is scoped by its table.
func SetKey(family, table, name string) string { return family + " " + table + " " + name }

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

// Parse reads `nft -j list ruleset` (or `list table …`) output.
func Parse(data []byte) (*Ruleset, error) {
	var doc jsonRuleset
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("reading nft's JSON listing: %w", err)
	}
	l := &Ruleset{Sets: map[string]*Set{}}
	byName := map[string]*Chain{}
	for _, o := range doc.Nftables {
		switch {
		case o.Chain != nil:
			c := o.Chain
			ch := &Chain{Family: c.Family, Table: c.Table, Name: c.Name, Type: c.Type, Hook: c.Hook, Policy: c.Policy, Prio: c.Prio}
			l.Chains = append(l.Chains, ch)
			byName[SetKey(c.Family, c.Table, c.Name)] = ch
		case o.Rule != nil:
			r := o.Rule
			if ch := byName[SetKey(r.Family, r.Table, r.Chain)]; ch != nil {
				ch.Rules = append(ch.Rules, Rule{Expr: r.Expr, Comment: r.Comment})
			}
		case o.Set != nil || o.Map != nil:
			s := o.Set
			if s == nil {
				s = o.Map
			}
			l.Sets[SetKey(s.Family, s.Table, s.Name)] = &Set{Family: s.Family, Table: s.Table, Name: s.Name, Map: s.Map, Elems: s.Elem}
		}
	}
	return l, nil
}

// Chain returns a chain of a table.
func (l *Ruleset) Chain(family, table, name string) *Chain {
	for _, c := range l.Chains {
		if c.Family == family && c.Table == table && c.Name == name {
			return c
		}
	}
	return nil
}

// ValueText writes a set element as a script does: a concatenation's
// parts joined by " . ", a prefix as addr/len, a range as lo-hi. Anything
// else is kept as its JSON text, which matches no wanted element: the
// table is then rewritten, never trusted.
func ValueText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case map[string]any:
		if c, ok := x["concat"].([]any); ok {
			parts := make([]string, len(c))
			for i, p := range c {
				parts[i] = ValueText(p)
			}
			return strings.Join(parts, " . ")
		}
		if e, ok := x["elem"].(map[string]any); ok {
			return ValueText(e["val"])
		}
		if p, ok := x["prefix"].(map[string]any); ok {
			return ValueText(p["addr"]) + "/" + ValueText(p["len"])
		}
		if r, ok := x["range"].([]any); ok && len(r) == 2 {
			return ValueText(r[0]) + "-" + ValueText(r[1])
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}
