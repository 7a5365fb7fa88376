package audit

import (
	"fmt"
	"strings"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/nft/nftplan"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
)

// Rate limits do not change who can reach a port: a first packet is
// under any limit, and the evaluators say so. The row names the limit
// when the installed rules carry it (their comments, which the
// intactness check ties to the policy), and says when the policy's
// limit is missing from the kernel.

// limitComments lists the comments of dockmoat's installed limit rules.
func limitComments(fc *famCtx, live *nftjson.Ruleset) []string {
	var out []string
	if fc.filter != nil {
		for _, name := range []string{iptplan.ChainIngress, iptplan.ChainInput} {
			if ch := fc.filter.Chains[name]; ch != nil {
				for _, r := range ch.Rules {
					if c := commentText(r); isLimitDesc(c) {
						out = append(out, c)
					}
				}
			}
		}
	}
	if live != nil {
		for _, ch := range live.Chains {
			if ch.Family != nftplan.TableFamily || ch.Table != nftplan.TableName {
				continue
			}
			for _, r := range ch.Rules {
				if _, c, ok := strings.Cut(r.Comment, " "); ok && isLimitDesc(c) {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

func isLimitDesc(c string) bool {
	_, _, _, ok := rules.ParseLimitDesc(c)
	return ok
}

// noteLimit names a row's rate limit, installed or not.
func noteLimit(row *report.Row, fc *famCtx, dec rules.Decision) {
	if !dec.Open || dec.Limit.IsZero() {
		return
	}
	want := fmt.Sprintf("%d/%s", dec.Binding.HostPort, dec.Binding.Proto)
	for _, c := range fc.limits {
		if port, container, _, _ := rules.ParseLimitDesc(c); port == want && container != "" && strings.HasPrefix(dec.Container, container) {
			row.RateLimit = dec.Limit.String()
			row.Reason += "; new connections beyond " + dec.Limit.String() + " per source are refused"
			return
		}
	}
	row.Reason += "; its rate limit " + dec.Limit.String() + " is NOT installed"
}
