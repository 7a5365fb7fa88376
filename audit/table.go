// Package audit answers "who can really reach each published port, and
// why" from the live state: Docker's port bindings and the installed
// netfilter ruleset, evaluated rule by rule for a new connection from
// outside. It reuses package rules for what dockmoat intends and compares.
// The evaluator is pure (text in, verdict out) and says "unknown" rather
// than guess when it meets a match or target it cannot evaluate.
package audit

import (
	"bufio"
	"github.com/dockmoat/dockmoat/rules"
	"strings"
)

// Table is one parsed iptables-save table.
type Table struct {
	Name   string
	Chains map[string]*Chain
	// Sets holds the contents of the ipsets rules may look up (dockmoat's
	// own, read by the caller); a set not here evaluates as unknown.
	Sets map[string][]rules.SetElem
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
	Args  []string // tokens, quotes removed
}

// ParseSave parses iptables-save output into its tables.
func ParseSave(data string) map[string]*Table {
	tables := map[string]*Table{}
	var cur *Table
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 8*1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
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
		case strings.HasPrefix(line, "-A "):
			args := tokenize(line)
			if len(args) < 2 {
				continue
			}
			ch := cur.Chains[args[1]]
			if ch == nil {
				ch = &Chain{Name: args[1], Policy: "-"}
				cur.Chains[args[1]] = ch
			}
			raw := strings.TrimPrefix(line, "-A "+args[1]+" ")
			ch.Rules = append(ch.Rules, Rule{Chain: args[1], Raw: raw, Args: args[2:]})
		}
	}
	return tables
}

// tokenize splits an iptables-save line, honouring double quotes.
func tokenize(s string) []string {
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
