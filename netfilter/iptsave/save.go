// Package iptsave owns the iptables-save text format: the one reader
// (Parse: tables, chains with their policy, rules tokenised) used by the
// iptables backend and by audit, and the one writer of
// `iptables-restore --noflush` input (Batch, RuleLine).
package iptsave

import (
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/setelem"
)

// Table is one parsed iptables-save table.
type Table struct {
	Name   string
	Chains map[string]*Chain
	// Sets holds the contents of the ipsets rules may look up, for
	// readers that evaluate rules (audit); the parser leaves it empty.
	Sets map[string][]setelem.Elem
}

// Chain is a chain with its policy ("-" for user chains) and rules.
type Chain struct {
	Name   string
	Policy string
	Rules  []Rule
}

// Rule is one -A line, tokenised.
type Rule struct {
	Chain string
	Raw   string   // the line without "-A CHAIN "
	Args  []string // tokens after the chain name, quotes removed
	// Packets is the rule's packet counter, from `iptables-save -c`
	// ("[PACKETS:BYTES] -A …"); 0 without -c.
	Packets uint64
}

// Parse parses iptables-save output into its tables, each rule tokenised.
func Parse(data []byte) map[string]*Table { return parse(data, true) }

// ParseRaw is Parse without tokenising: Rule.Args stays empty. A pass
// reads the whole table and needs only the raw text.
func ParseRaw(data []byte) map[string]*Table { return parse(data, false) }

func parse(data []byte, tokenise bool) map[string]*Table {
	tables := map[string]*Table{}
	var cur *Table
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			cur = &Table{Name: line[1:], Chains: map[string]*Chain{}}
			tables[cur.Name] = cur
		case cur == nil:
		case line == "COMMIT":
			cur = nil
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) >= 2 {
				cur.Chains[f[0]] = &Chain{Name: f[0], Policy: f[1]}
			}
		case strings.HasPrefix(line, "[") && strings.Contains(line, "] -A "):
			counters, rule, _ := strings.Cut(line[1:], "] ")
			pkts, _, _ := strings.Cut(counters, ":")
			n, _ := strconv.ParseUint(pkts, 10, 64)
			cur.add(rule, tokenise).Packets = n
		case strings.HasPrefix(line, "-A "):
			cur.add(line, tokenise)
		}
	}
	return tables
}

// add appends the rule of an "-A CHAIN …" line.
func (t *Table) add(line string, tokenise bool) *Rule {
	name, raw, _ := strings.Cut(strings.TrimPrefix(line, "-A "), " ")
	ch := t.Chains[name]
	if ch == nil {
		ch = &Chain{Name: name, Policy: "-"}
		t.Chains[name] = ch
	}
	r := Rule{Chain: name, Raw: raw}
	if tokenise {
		r.Args = Tokenize(raw)
	}
	ch.Rules = append(ch.Rules, r)
	return &ch.Rules[len(ch.Rules)-1]
}

// Tokenize splits an iptables-save line, honouring double quotes.
func Tokenize(s string) []string {
	var out []string
	var b strings.Builder
	inQ, has := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQ && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '"':
			inQ, has = !inQ, true
		case (c == ' ' || c == '\t') && !inQ:
			if has || b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
				has = false
			}
		default:
			b.WriteByte(c)
		}
	}
	if has || b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}
