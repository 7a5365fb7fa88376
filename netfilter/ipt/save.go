package ipt

import (
	"regexp"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
)

// Table is one parsed iptables-save table.
type Table struct {
	Name   string
	Chains map[string]*Chain
	// Sets holds the contents of the ipsets rules may look up, for
	// readers that evaluate rules (audit); the parser leaves it empty.
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
	Args  []string // tokens after the chain name, quotes removed
}

// ParseSave parses iptables-save output into its tables, each rule
// tokenised. It is the one reader of that format: the backend's Observe
// and audit both use it.
func ParseSave(data []byte) map[string]*Table { return parse(data, true) }

// parse reads the tables; tokenise=false leaves Rule.Args empty (Observe
// needs only the raw text, and a pass reads the whole table).
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
		case strings.HasPrefix(line, "-A "):
			name, raw, _ := strings.Cut(line[3:], " ")
			ch := cur.Chains[name]
			if ch == nil {
				ch = &Chain{Name: name, Policy: "-"}
				cur.Chains[name] = ch
			}
			r := Rule{Chain: name, Raw: raw}
			if tokenise {
				r.Args = Tokenize(raw)
			}
			ch.Rules = append(ch.Rules, r)
		}
	}
	return tables
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

var hashRe = regexp.MustCompile(`--comment "?` + regexp.QuoteMeta(rules.CommentPrefix) + `([0-9a-f]{16})`)

// Observe reads from iptables-save output of the filter table what the
// backend needs: the chains, dockmoat's rule hashes and its jumps.
func Observe(data []byte) netfilter.Observed {
	obs := netfilter.Observed{Chains: map[string]bool{}, Owned: map[string][]string{}}
	filter := parse(data, false)["filter"]
	if filter == nil {
		return obs
	}
	for name, ch := range filter.Chains {
		obs.Chains[name] = true
		switch {
		case name == rules.InputHookChain:
			obs.InputHook = positions(ch.Rules, isInputHook)
		case name == "FORWARD":
			obs.ForwardHook = positions(ch.Rules, isHook)
		case name == rules.HookChain:
			obs.Hook = positions(ch.Rules, isHook)
			for _, r := range ch.Rules {
				obs.DockerUser = append(obs.DockerUser, "-A "+r.Chain+" "+r.Raw)
			}
		case rules.IsOwnedChain(name):
			hashes := make([]string, len(ch.Rules))
			for i, r := range ch.Rules {
				if m := hashRe.FindStringSubmatch(r.Raw); m != nil {
					hashes[i] = m[1]
				}
			}
			obs.Owned[name] = hashes
		}
	}
	return obs
}

// positions returns the 1-based positions of the rules is accepts.
func positions(rs []Rule, is func(string) bool) []int {
	var pos []int
	for i, r := range rs {
		if is("-A " + r.Chain + " " + r.Raw) {
			pos = append(pos, i+1)
		}
	}
	return pos
}

func isHook(line string) bool {
	return strings.Contains(line, rules.HookComment) && strings.HasSuffix(line, "-j "+rules.ChainMain)
}

func isInputHook(line string) bool {
	return strings.Contains(line, rules.InputHookComment) && strings.HasSuffix(line, "-j "+rules.ChainInput)
}
