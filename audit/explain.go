package audit

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
)

// `dockmoat audit --explain PORT[/PROTO]` answers "why is this port
// (still) open?": for each source class, the path its first packet takes,
// rule by rule, and what to change when the result is beyond policy.

// explain fills the row's paths (one per source class, the packet that
// got in when one did) and its fix.
func (pe portEval) explain(row *report.Row, all []outcome) {
	def := pe.fc.variants[pe.b.Proto]
	bySrc := map[netip.Addr]outcome{}
	var order []netip.Addr
	for _, o := range all {
		cur, seen := bySrc[o.src]
		if !seen {
			order = append(order, o.src)
		}
		if !seen || (cur.v.Result != verdict.Accept && o.v.Result == verdict.Accept) {
			bySrc[o.src] = o
		}
	}
	for _, src := range order {
		o := bySrc[src]
		p := report.Path{Source: "anyone", Result: o.v.Result.String(), Steps: o.v.Path}
		if src != pe.fc.generic {
			p.Source = sourceLabel(pe.fc.spans, src)
		}
		if len(def) > 0 && o.vr != def[0] {
			p.Needs = o.vr.describe(def[0])
		}
		for i := range p.Steps {
			p.Steps[i].Rule = ownHash.ReplaceAllString(p.Steps[i].Rule, "")
		}
		// Sources whose packets went the same way share one path.
		if i := slices.IndexFunc(row.Paths, func(q report.Path) bool {
			return q.Result == p.Result && q.Needs == p.Needs && slices.Equal(q.Steps, p.Steps)
		}); i >= 0 {
			row.Paths[i].Source += ", " + p.Source
			continue
		}
		row.Paths = append(row.Paths, p)
	}
	row.Fix = pe.fix(*row, bySrc[pe.fc.generic])
}

// ownHash is the hash in dockmoat's rule comments: the description is
// what a reader needs.
var ownHash = regexp.MustCompile(rules.CommentPrefix + `[0-9a-f]{16} `)

// fix says what to change when the port is beyond policy, or opens less
// than the policy wants.
func (pe portEval) fix(row report.Row, anyone outcome) string {
	v := anyone.v
	switch {
	case row.Intended && !row.Beyond:
		return ""
	case slices.ContainsFunc(v.Returned, func(r iptsave.Rule) bool { return strings.Contains(r.Raw, rules.DisabledDesc) }):
		return "protection is switched off: run 'dockmoat enable'"
	case observing(v):
		return "dockmoat observes and does not enforce: run 'dockmoat suggest' to see what would be refused, then 'dockmoat enforce'"
	case row.Beyond:
		var fixes []string
		if r, ok := foreignMove(v); ok {
			fixes = append(fixes, fmt.Sprintf("look at rule '%s' in %s: it is not dockmoat's, and lets this packet through", stripComment(r.Rule), r.Chain))
		}
		if !pe.fc.installed {
			fixes = append(fixes, "dockmoat is not protecting this host: start it ('dockmoat run' or the systemd unit); the port then closes unless a label or the config opens it")
		}
		if len(fixes) > 0 {
			return strings.Join(fixes, "; ")
		}
		if pe.haveDec && pe.dec.Open {
			return fmt.Sprintf("%s opens it (%s): narrow it with dockmoat.from or remove it", pe.dec.Reason, pe.dec.Container)
		}
		return "dockmoat's rules differ from its policy: run 'dockmoat plan' and see the log of 'dockmoat run'"
	case pe.haveDec && pe.dec.Open:
		return fmt.Sprintf("the policy opens it (%s) but the path above drops it: look at the rule that decided", pe.dec.Reason)
	}
	return "add the label dockmoat.allow=" + strconv.Itoa(int(pe.b.HostPort)) + "/" + pe.b.Proto + " (or a config allow) to open it"
}

// foreignMove is the last step before the verdict that is not one of
// dockmoat's rules nor Docker's own (its chains, and the RETURN that
// ends DOCKER-USER): the rule to look at.
func foreignMove(v verdict.Verdict) (verdict.Step, bool) {
	for i := len(v.Path) - 1; i >= 0; i-- {
		s := v.Path[i]
		if strings.Contains(s.Rule, rules.CommentPrefix) || strings.HasPrefix(s.Chain, "DOCKMOAT") ||
			strings.Contains(s.Chain, " docker-bridges/") || strings.HasPrefix(s.Chain, nftOwnTable) ||
			strings.HasPrefix(s.Rule, "end of chain") || strings.TrimSpace(stripComment(s.Rule)) == "-j RETURN" {
			continue
		}
		if s.Chain == "DOCKER-USER" || strings.HasPrefix(s.Chain, "ufw") || !strings.HasPrefix(s.Chain, "DOCKER") && s.Chain != "FORWARD" {
			return s, true
		}
	}
	return verdict.Step{}, false
}
