package nfteval

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/nftjson"
)

// RuleText writes an nft rule for reports, close to how nft lists it:
// `iifname != "docker0" ip daddr 172.17.0.2 tcp dport 80 accept comment "…"`.
// It is for people; the evaluation reads the JSON, never this text.
func RuleText(r nftjson.Rule) string {
	var parts []string
	for _, st := range r.Expr {
		for kind, body := range st {
			switch kind {
			case "match":
				parts = append(parts, exprText(body))
			case "counter":
			case "accept", "drop", "return", "continue":
				parts = append(parts, kind)
			case "jump", "goto":
				t, _ := body.(map[string]any)["target"].(string)
				parts = append(parts, kind+" "+t)
			case "vmap":
				m, _ := body.(map[string]any)
				parts = append(parts, valueString(m["key"])+" vmap "+valueString(m["data"]))
			case "mangle":
				m, _ := body.(map[string]any)
				parts = append(parts, valueString(m["key"])+" set "+valueString(m["value"]))
			default:
				parts = append(parts, kind+" "+valueString(body))
			}
		}
	}
	if r.Comment != "" {
		parts = append(parts, "comment "+strconv.Quote(r.Comment))
	}
	return strings.Join(parts, " ")
}

// exprText writes a match: left, the operator unless it is the implicit
// one, right.
func exprText(body any) string {
	m, _ := body.(map[string]any)
	op, _ := m["op"].(string)
	s := valueString(m["left"])
	if op != "==" && op != "in" {
		s += " " + op
	}
	return s + " " + valueString(m["right"])
}

// valueString writes an expression or value.
func valueString(v any) string {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "@") || !strings.ContainsAny(x, " *") && x != "" {
			return x
		}
		return strconv.Quote(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = valueString(p)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		for kind, body := range x {
			b, _ := body.(map[string]any)
			switch kind {
			case "meta":
				return "meta " + valueString(b["key"])
			case "payload":
				return valueString(b["protocol"]) + " " + valueString(b["field"])
			case "ct":
				if d, ok := b["dir"].(string); ok {
					return "ct " + d + " " + valueString(b["key"])
				}
				return "ct " + valueString(b["key"])
			case "fib":
				return "fib daddr type"
			case "concat":
				parts, _ := body.([]any)
				out := make([]string, len(parts))
				for i, p := range parts {
					out[i] = valueString(p)
				}
				return strings.Join(out, " . ")
			case "set":
				items, _ := body.([]any)
				return "{ " + strings.Join(stringsOf(items), ", ") + " }"
			case "prefix":
				return valueString(b["addr"]) + "/" + valueString(b["len"])
			case "range":
				r, _ := body.([]any)
				if len(r) == 2 {
					return valueString(r[0]) + "-" + valueString(r[1])
				}
			case "&", "|":
				args, _ := body.([]any)
				if len(args) == 2 && isMetaMark(args[0]) {
					if n, ok := args[1].(float64); ok { // meta mark & 0x20000000
						return "meta mark " + kind + " 0x" + strconv.FormatUint(uint64(n), 16)
					}
				}
				if len(args) == 2 && kind == "&" {
					return valueString(args[0]) + " & (" + strings.ReplaceAll(valueString(args[1]), ",", "|") + ")"
				}
			}
		}
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func stringsOf(items []any) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = valueString(it)
	}
	return out
}

// commentOf is the comment at the end of a RuleText.
func commentOf(text string) string {
	i := strings.LastIndex(text, ` comment "`)
	if i < 0 {
		return ""
	}
	c, err := strconv.Unquote(text[i+len(" comment "):])
	if err != nil {
		return ""
	}
	return c
}
