// Package nftplan is the nftables backend's pure half: what dockmoat
// installs with nft and how it compares with what is installed, with no
// exec. It renders the policy of rules/policy as table inet dockmoat, its
// check table inet dockmoat_check (what fails closed when the first is
// flushed or deleted), the ban table and table bridge dockmoat (Render,
// Cache, GuardTable; bridge.go, limit.go), reads its own tables from a
// listing (ParseJSON, listing.go) and diffs the two (TableDiff, SetDrift,
// diff.go), with the plan detail `dockmoat plan` prints (detail.go).
// netfilter/nft runs what it plans.
package nftplan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// TableName is dockmoat's own table for Docker's nftables firewall backend
// (Docker 29 `--firewall-backend=nftables`), where there is no DOCKER-USER.
// Its base chain hooks forward just before Docker's filter-FORWARD chain:
// in nftables an accept ends only the current base chain (the packet goes
// on to Docker's), while a drop is final, so the same policy reads
// "drop unless allowed" and never has to accept for Docker.
//
// Fail-closed pair (ipt's DOCKMOAT-PASS and DOCKMOAT-CHECK): what the table
// lets through it marks (rules.PassMark) as it accepts; nothing falls off
// the forward chain unmarked but what it sends to ingress or egress by
// goto. A second table, CheckTable, whose base chains run just after
// (CheckPriority), drops a new connection without the mark that the
// policy would have decided (DNATed, a proxied binding, a deny
// container's egress) and clears the mark. A flush of any chain or set
// of either table, or the deletion of either table, then closes.
const (
	TableFamily = "inet"
	TableName   = "dockmoat"
	CheckTable  = "dockmoat_check"
	// BanTable holds the ban sets ban4 and ban6 (elements may carry a
	// timeout) and the chains that refuse their sources first, on every
	// published port: dockmoat declares it and rewrites its chains, but
	// never deletes it or touches the sets' elements (they are the
	// user's: `nft add element inet dockmoat_ban ban4 { ADDR timeout
	// 10m }`, fail2ban, CrowdSec). Uninstall deletes it.
	BanTable      = "dockmoat_ban"
	BanPriority   = "filter - 15"
	Priority      = "filter - 10"
	CheckPriority = "filter - 5"
	chainMain     = "forward"
	chainIng      = "ingress"
	chainEgress   = "egress"
)

// markSet marks a packet as let through by dockmoat; pass also accepts it
// (which ends only dockmoat's base chain).
var (
	markSet = fmt.Sprintf("meta mark set meta mark | %#x", rules.PassMark)
	pass    = markSet + " accept"
	// observed, in observe mode, marks the connection for the daemon to
	// count (rules.ObserveMark) and lets it through.
	observed = fmt.Sprintf("ct mark set ct mark | %#x ", rules.ObserveMark) + pass
	// unmarked matches a packet without the mark.
	unmarked = fmt.Sprintf("meta mark & %#x == 0", rules.PassMark)
	markClr  = fmt.Sprintf("meta mark set meta mark & %#x", ^uint32(rules.PassMark))
)

// Rule is one rule with its hash, as in the iptables renderer.
type Rule struct {
	Expr string // nft statement(s), without the comment
	Desc string
	Hash string
}

// Chain is a chain of the table.
type Chain struct {
	Name  string
	Base  string // "type filter hook forward priority …; policy accept;" for base chains
	Rules []Rule
}

// ChainName implements netfilter.HashedChain.
func (c Chain) ChainName() string { return c.Name }

// Hashes lists the rule hashes in order.
func (c Chain) Hashes() []string {
	out := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		out[i] = r.Hash
	}
	return out
}

// Ruleset is the desired table.
type Ruleset struct {
	Sets   []Set
	Chains []Chain
	// Check are the chains of CheckTable (none for the guard).
	Check []Chain
	// Bridge are the chains of BridgeTable (none when no deny container
	// needs it).
	Bridge []Chain
	// BridgeOnly: this ruleset is only the bridge table (NewBridgeLayer):
	// the inet tables are not its to write or delete.
	BridgeOnly bool
	// Ban are the chains of BanTable (none: the table is not dockmoat's
	// to declare, as in the firewalld layer).
	Ban []Chain
	// Meters are the rate limits' dynamic sets (limit.go).
	Meters []Meter
}

// Set is a named set of the table, its elements written as nft lists
// them, so that a listing compares with them as text.
type Set struct {
	Name, Type string
	Interval   bool
	Elems      []string
}

func (c *Chain) add(text, expr string) {
	h := sha256.Sum256([]byte(c.Name + "\x00" + expr + "\x01" + text))
	c.Rules = append(c.Rules, Rule{Expr: expr, Desc: nftDesc(text), Hash: hex.EncodeToString(h[:])[:16]})
}

// nftDesc keeps the comment within nft's 128-byte limit.
func nftDesc(s string) string {
	s = rules.Desc(s)
	if max := 128 - len(rules.CommentPrefix) - 17; len(s) > max {
		s = s[:max]
	}
	return s
}

// Text renders the whole table definition, and the check and ban
// tables'.
func (rs Ruleset) Text() string { return rs.text(true) }

func (rs Ruleset) text(withBan bool) string {
	var b strings.Builder
	if len(rs.Bridge) > 0 {
		fmt.Fprintf(&b, "table %s %s {\n", BridgeFamily, BridgeName)
		writeChains(&b, rs.Bridge)
		b.WriteString("}\n")
	}
	if rs.BridgeOnly {
		return b.String()
	}
	fmt.Fprintf(&b, "table %s %s {\n", TableFamily, TableName)
	for _, set := range rs.Sets {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", set.Name, set.Type)
		if set.Interval {
			b.WriteString("\t\tflags interval\n")
		}
		if len(set.Elems) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(set.Elems, ",\n\t\t\t"))
		}
		b.WriteString("\t}\n")
	}
	writeMeters(&b, rs.Meters)
	writeChains(&b, rs.Chains)
	b.WriteString("}\n")
	if len(rs.Check) > 0 {
		fmt.Fprintf(&b, "table %s %s {\n", TableFamily, CheckTable)
		writeChains(&b, rs.Check)
		b.WriteString("}\n")
	}
	if withBan && len(rs.Ban) > 0 {
		fmt.Fprintf(&b, "table %s %s {\n%s", TableFamily, BanTable, banSets)
		writeChains(&b, rs.Ban)
		b.WriteString("}\n")
	}
	return b.String()
}

// banSets declares the ban sets; declaring them again leaves their
// elements as they are.
const banSets = "\tset ban4 {\n\t\ttype ipv4_addr\n\t\tflags interval, timeout\n\t}\n" +
	"\tset ban6 {\n\t\ttype ipv6_addr\n\t\tflags interval, timeout\n\t}\n"

// banScript declares the ban table (its sets and base chains, a no-op
// where they exist), empties its chains and writes their rules: the
// table and the sets' elements stay.
func (rs Ruleset) banScript() string {
	if len(rs.Ban) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n%s", TableFamily, BanTable, banSets)
	empty := make([]Chain, len(rs.Ban))
	for i, ch := range rs.Ban {
		empty[i] = Chain{Name: ch.Name, Base: ch.Base}
	}
	writeChains(&b, empty)
	b.WriteString("}\n")
	for _, ch := range rs.Ban {
		fmt.Fprintf(&b, "flush chain %s %s %s\n", TableFamily, BanTable, ch.Name)
	}
	fmt.Fprintf(&b, "table %s %s {\n", TableFamily, BanTable)
	for _, ch := range rs.Ban {
		writeChains(&b, []Chain{{Name: ch.Name, Rules: ch.Rules}})
	}
	b.WriteString("}\n")
	return b.String()
}

// BanChains refuse the ban sets' sources first: a new DNATed connection
// on forward, a new connection to a published binding on input.
func BanChains(res [2]policy.Result) []Chain {
	fwd := Chain{Name: chainMain, Base: "type filter hook forward priority " + BanPriority + "; policy accept;"}
	in := Chain{Name: "input", Base: "type filter hook input priority " + BanPriority + "; policy accept;"}
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		set := "@ban4"
		if fam == rules.IPv6 {
			set = "@ban6"
		}
		fwd.add("banned source, set "+set[1:], "ct state new ct status dnat "+nftAddr(fam)+" saddr "+set+" drop")
		for _, g := range runGroups(res[i].Input.All, fam) {
			in.add("banned source, set "+set[1:]+": "+g.spec+" via docker-proxy", "ct state new "+nftAddr(fam)+" saddr "+set+" "+g.match+" drop")
		}
	}
	return []Chain{fwd, in}
}

func writeChains(b *strings.Builder, chains []Chain) {
	for _, ch := range chains {
		fmt.Fprintf(b, "\tchain %s {\n", ch.Name)
		if ch.Base != "" {
			fmt.Fprintf(b, "\t\t%s\n", ch.Base)
		}
		for _, r := range ch.Rules {
			fmt.Fprintf(b, "\t\t%s comment \"%s%s %s\"\n", r.Expr, rules.CommentPrefix, r.Hash, r.Desc)
		}
		b.WriteString("\t}\n")
	}
}

// All lists the chains of both tables, the check table's named
// "dockmoat_check/CHAIN" (as ParseJSON lists them).
func (rs Ruleset) All() []Chain {
	out := slices.Clone(rs.Chains)
	for _, ch := range rs.Check {
		ch.Name = CheckTable + "/" + ch.Name
		out = append(out, ch)
	}
	for _, ch := range rs.Bridge {
		ch.Name = BridgeKey + "/" + ch.Name
		out = append(out, ch)
	}
	for _, ch := range rs.Ban {
		ch.Name = BanTable + "/" + ch.Name
		out = append(out, ch)
	}
	return out
}

// Lines implements netfilter.Rendered: the table definition, by line.
func (rs Ruleset) Lines() []string { return strings.Split(strings.TrimRight(rs.Text(), "\n"), "\n") }

// Count implements netfilter.Rendered: the rules of every chain.
func (rs Ruleset) Count() int {
	n := 0
	for _, ch := range rs.All() {
		n += len(ch.Rules)
	}
	return n
}

// ReplaceScript is the `nft -f` input that swaps the tables atomically:
// each is made sure to exist, so that deleting it cannot fail, deleted
// and written again, all as one transaction; the ban table is declared
// and its chains rewritten, never deleted (banScript). (The guard's table
// has no check table and leaves one alone.)
func (rs Ruleset) ReplaceScript() string {
	var tables []string
	if !rs.BridgeOnly {
		tables = append(tables, TableFamily+" "+TableName)
	}
	if len(rs.Check) > 0 {
		tables = append(tables, TableFamily+" "+CheckTable)
	}
	if len(rs.Check) > 0 || rs.BridgeOnly {
		tables = append(tables, BridgeKey)
	}
	return DeleteScript(tables...) + rs.text(false) + rs.banScript()
}

// DeleteScript deletes tables of dockmoat's ("inet dockmoat") whether
// they exist or not.
func DeleteScript(tables ...string) string {
	var b strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&b, "table %s\ndelete table %s\n", t, t)
	}
	return b.String()
}

func nftAddr(fam rules.Family) string {
	if fam == rules.IPv6 {
		return "ip6"
	}
	return "ip"
}

// Render renders the same policy as policy.Build for the nftables backend, both
// families in one inet table. The decisions and problems are policy.Build's.
// Unless the config says `ipset: off`, allows are nft set lookups as on the
// iptables path (see sets.go): a set keyed on container address, protocol
// and container port (and source prefix), then a check of the published
// port, which nft cannot put in a set key here (`ct original proto-dst`
// has no fixed type in a concatenation).
func Render(cfg config.Config, snap rules.Snapshot) (Ruleset, [2]policy.Result) {
	return RenderWith(cfg, snap, false)
}

// RenderWith is Render; proxyAll reports every published binding as
// served by docker-proxy (NewLayer says why). The input chain closes
// every binding either way (rules/policy/proxy.go).
func RenderWith(cfg config.Config, snap rules.Snapshot, proxyAll bool) (Ruleset, [2]policy.Result) {
	return (*Cache)(nil).Render(cfg, snap, proxyAll)
}

// Cache keeps the policy's computation between a backend's passes,
// as the iptables backend does: the memo saves re-deciding unchanged
// containers, and one policy.Incremental per family keeps the set
// grouping. It changes no result, only the time a pass over 10,000
// containers takes when one changed. Not safe for concurrent use; the
// loop serialises Plan.
type Cache struct {
	memo *policy.Memo
	inc  [2]*policy.Incremental
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{memo: policy.NewMemo(), inc: [2]*policy.Incremental{policy.NewIncremental(rules.IPv4), policy.NewIncremental(rules.IPv6)}}
}

// build is policy.Build for the i-th family, through the cache if there is one.
func (c *Cache) build(cfg config.Config, snap rules.Snapshot, i int, opt policy.Options) policy.Result {
	fam := []rules.Family{rules.IPv4, rules.IPv6}[i]
	if c != nil {
		opt.Memo, opt.Inc = c.memo, c.inc[i]
	}
	return policy.Build(cfg, snap, fam, opt)
}

// Render is RenderWith through the cache (a nil cache: none).
func (c *Cache) Render(cfg config.Config, snap rules.Snapshot, proxyAll bool) (Ruleset, [2]policy.Result) {
	opt := policy.Options{Sets: !cfg.NoIPSet, ProxyAll: proxyAll}
	res := [2]policy.Result{c.build(cfg, snap, 0, opt), c.build(cfg, snap, 1, opt)}
	bridges := rules.ValidBridges(snap)

	main := forwardChain(cfg, res, bridges)
	ing := Chain{Name: chainIng}
	addDenied(&ing, cfg, "ct status dnat drop")
	addTrusted(&ing, cfg, pass)
	var rs Ruleset
	limitRules(&ing, &rs, res, true)
	deny := Chain{Name: "deny"}
	tail := &ing
	var portChains []Chain
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		allows := res[i].Allows()
		if opt.Sets {
			allows = res[i].Linear
			sets, rules, ports := nftSets(res[i], fam)
			rs.Sets = append(rs.Sets, sets...)
			for _, r := range rules {
				ing.add(r[0], r[1])
			}
			portChains = append(portChains, ports)
		}
		for _, a := range allows {
			ing.add(a.Describe(), nftAllow(a, fam))
		}
	}
	if opt.Sets {
		ing.add("not allowed", "goto deny")
		tail = &deny
	}
	if cfg.Observe {
		tail.add(rules.ObserveDesc, "ct status dnat "+observed)
	}
	if cfg.LogBlocked {
		tail.add("log blocked", `limit rate 10/minute burst 20 packets log prefix "`+rules.LogPrefix+`"`)
	}
	tail.add("default deny", "drop")
	rs.Chains = []Chain{main, ing}
	if opt.Sets {
		rs.Chains = append(append(rs.Chains, portChains...), deny)
	}
	if eg, ok := egressChain(cfg, res); ok {
		rs.Chains = append(rs.Chains, eg)
	}
	in, hasInput := nftInput(cfg, bridges, res)
	if hasInput {
		rs.Chains = append(rs.Chains, in)
	}
	rs.Check = checkTable(res, hasInput)
	rs.Bridge = BridgeChains(cfg, [2][]rules.Egress{res[0].Egress, res[1].Egress})
	return rs, res
}

// forwardChain is the table's forward base chain: replies, the egress of
// deny containers, traffic leaving a Docker network (passed), entering
// one (to ingress), networks not seen yet, and published ports into a
// new interface.
func forwardChain(cfg config.Config, res [2]policy.Result, bridges []string) Chain {
	main := Chain{Name: chainMain, Base: "type filter hook forward priority " + Priority + "; policy accept;"}
	bypass(&main, cfg)
	main.add("replies and related traffic", "ct state established,related accept")
	egressJumps(&main, res, true)
	for _, b := range bridges {
		main.add("leaving docker network "+b, "iifname "+strconv.Quote(b)+" "+pass)
	}
	for _, b := range bridges {
		main.add("entering docker network "+b, "oifname "+strconv.Quote(b)+" goto "+chainIng)
	}
	// Networks not seen yet, as in the ipt backend (unseenNetworks): the
	// host's own br-* bridges excepted (rules.ForeignBridges).
	not := notForeign(res[0].Foreign)
	for _, b := range rules.UnseenBridges(bridges) {
		main.add("leaving a docker network not seen yet "+rules.BridgePattern(b), not("iifname")+"iifname "+strconv.Quote(rules.BridgePattern(b))+" "+pass)
	}
	for _, b := range rules.UnseenBridges(bridges) {
		main.add("entering a docker network not seen yet "+rules.BridgePattern(b), not("oifname")+"oifname "+strconv.Quote(rules.BridgePattern(b))+" goto "+chainIng)
	}
	if res[0].HostOutKnown { // ipt's unseenInterfaces; br-lan is the host's too
		m := "ct status dnat "
		if own := slices.Concat(res[0].HostOut, res[0].Foreign); len(own) > 0 {
			m = "oifname != " + nftNames(own) + " " + m
		}
		main.add("published port into a new interface", m+"goto "+chainIng)
	}
	main.add("not into a docker network", markSet)
	return main
}

// checkTable is the second table of the fail-closed pair: new connections
// the policy decides (DNATed, to a proxied binding, a deny container's)
// without dockmoat's mark are dropped or refused; the mark is cleared.
func checkTable(res [2]policy.Result, input bool) []Chain {
	fwd := Chain{Name: chainMain, Base: "type filter hook forward priority " + CheckPriority + "; policy accept;"}
	fwd.add("not let through by dockmoat, its table flushed or deleted: drop", "ct state new ct status dnat "+unmarked+" drop")
	checkEgress(&fwd, res, true)
	fwd.add("clear the mark", markClr)
	chains := []Chain{fwd}
	if input {
		in := Chain{Name: "input", Base: "type filter hook input priority " + CheckPriority + "; policy accept;"}
		for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			for _, g := range runGroups(res[i].Input.All, fam) {
				in.add(g.spec+" via docker-proxy: not let through by dockmoat", "ct state new "+g.match+" "+unmarked+" drop")
			}
		}
		checkEgress(&in, res, false)
		in.add("clear the mark", markClr)
		chains = append(chains, in)
	}
	return chains
}

// checkEgress refuses a deny container's new connection without the mark:
// leaving its network (forward), or to the host.
func checkEgress(ch *Chain, res [2]policy.Result, forward bool) {
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, e := range res[i].Egress {
			for _, f := range e.From {
				m := fmt.Sprintf("ct state new %s saddr %s iifname %s ", nftAddr(fam), f.Addr, strconv.Quote(f.Bridge))
				if forward {
					m += "oifname != " + strconv.Quote(f.Bridge) + " "
				}
				ch.add("egress of "+e.Container+": not let through by dockmoat", m+unmarked+" reject")
			}
		}
	}
}

// egressJumps sends deny containers' new connections to the egress chain:
// in forward those leaving their network, in input all of them.
func egressJumps(ch *Chain, res [2]policy.Result, forward bool) {
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, e := range res[i].Egress {
			for _, f := range e.From {
				m := fmt.Sprintf("%s saddr %s iifname %s ", nftAddr(fam), f.Addr, strconv.Quote(f.Bridge))
				text := "egress of " + e.Container + ": to the host"
				if forward {
					m += "oifname != " + strconv.Quote(f.Bridge) + " "
					text = "egress of " + e.Container + ": leaving docker network " + f.Bridge
				}
				ch.add(text, m+"goto "+chainEgress)
			}
		}
	}
}

// egressChain renders the deny containers' resolvers and allowed
// destinations (accept ends only dockmoat's base chain: Docker's rules
// still decide) and the reject of the rest (ipt's egressChain).
func egressChain(cfg config.Config, res [2]policy.Result) (Chain, bool) {
	ch := Chain{Name: chainEgress}
	if len(res[1].Egress) > 0 {
		for _, t := range rules.NeighbourDiscovery {
			ch.add("neighbour discovery: "+t.Name+" on the link", fmt.Sprintf("icmpv6 type %d ip6 hoplimit %d %s", t.Type, t.HopLimit, pass))
		}
	}
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, e := range res[i].Egress {
			for _, f := range e.From {
				src := nftAddr(fam) + " saddr " + f.Addr.String() + " "
				for _, p := range e.Passes() {
					ch.add("egress of "+e.Container+": "+p.What+" "+p.Dest.String(), src+nftDest(p.Dest, fam)+pass)
				}
				if cfg.LogBlocked {
					ch.add("egress of "+e.Container+": log refused", src+`limit rate 10/minute burst 20 packets log prefix "`+rules.EgressLogPrefix+`"`)
				}
				ch.add("egress of "+e.Container+": refused", src+"reject")
			}
		}
	}
	return ch, len(res[0].Egress)+len(res[1].Egress) > 0
}

// nftDest matches one allowed destination (one protocol, both, or all).
func nftDest(d config.EgressDest, fam rules.Family) string {
	m := nftAddr(fam) + " daddr " + nftPrefix(d.Prefix) + " "
	if d.AllPorts() {
		if d.Proto != "" {
			m += "meta l4proto " + d.Proto + " "
		}
		return m
	}
	ports := strconv.Itoa(int(d.Lo))
	if d.Hi != d.Lo {
		ports += "-" + strconv.Itoa(int(d.Hi))
	}
	if d.Proto != "" {
		return m + d.Proto + " dport " + ports + " "
	}
	return m + "meta l4proto { tcp, udp } th dport " + ports + " "
}

// bypass is `dockmoat disable`: one accept first in each base chain,
// which ends only dockmoat's chain, so Docker's own rules decide; the rest
// stays installed and kept up to date for `dockmoat enable`.
func bypass(ch *Chain, cfg config.Config) {
	if cfg.Disabled {
		ch.add(rules.DisabledDesc, pass)
	}
}

// nftInput renders the proxy path (rules/policy/proxy.go) as a base chain on the
// input hook, for both families and every published binding; ok is false
// when there is none. As in forward, accept only ends this chain; the
// drops are final.
func nftInput(cfg config.Config, bridges []string, res [2]policy.Result) (Chain, bool) {
	if res[0].Input.Empty() && res[1].Input.Empty() && len(res[0].Egress)+len(res[1].Egress) == 0 {
		return Chain{}, false
	}
	in := Chain{Name: "input", Base: "type filter hook input priority " + Priority + "; policy accept;"}
	bypass(&in, cfg)
	in.add("replies and related traffic", "ct state established,related accept")
	in.add("from the host itself", `iifname "lo" `+pass)
	egressJumps(&in, res, false)
	for _, b := range bridges {
		in.add("from docker network "+b, "iifname "+strconv.Quote(b)+" "+pass)
	}
	// No catch-all for networks not seen yet (as in the ipt backend's
	// inputChain): the host's own br-* bridges match it too.
	addDenied(&in, cfg, "return")
	for _, src := range rules.SortedPrefixes(cfg.TrustedSources) {
		fam := familyOf(src)
		in.add("trusted source "+src.String(), fmt.Sprintf("%s saddr %s %s", nftAddr(fam), src, pass))
	}
	for _, ifc := range cfg.TrustedIfaces {
		in.add("trusted interface "+ifc, "iifname "+strconv.Quote(ifc)+" "+pass)
	}
	limitRules(&in, nil, res, false)
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, d := range res[i].Input.Sourced {
			for _, src := range rules.SourcesOf(d, fam) {
				in.add(fmt.Sprintf("allow %s %d/%s via docker-proxy from %s", d.Container, d.Binding.HostPort, d.Binding.Proto, src),
					nftSrc(src, fam)+" "+nftProxyMatch(d.Binding, fam)+" "+pass)
			}
		}
		for _, g := range runGroups(res[i].Input.Open, fam) {
			in.add("allow "+g.spec+" via docker-proxy", g.match+" "+pass)
		}
	}
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, g := range runGroups(res[i].Input.All, fam) {
			if cfg.Observe {
				in.add(rules.ObserveDesc, g.match+" "+observed)
				continue
			}
			in.add(g.spec+" via docker-proxy: not allowed", g.match+" drop")
		}
	}
	return in, true
}

// nftProxyMatch matches a binding's new connections in one family.
func nftProxyMatch(b rules.PortBinding, fam rules.Family) string {
	return nftRunMatch(policy.PortRun{HostIP: b.HostIP, PortRange: policy.PortRange{Proto: b.Proto, Lo: b.HostPort, Hi: b.HostPort}}, fam)
}

// runGroup is one rule's match for runs of published ports of one
// protocol on one host address, and what its comment says of them.
type runGroup struct{ spec, match string }

// runGroups matches runs by protocol and host address (policy.GroupRuns):
// one rule per group, whose ports are an anonymous set when there are
// several runs, so the input path costs a set lookup, not one rule per
// run (1,000 scattered proxied ports were 1,000 rules, at 0.34× of no
// rules; BENCHMARKS.md). A group of one run is the rule it always was.
func runGroups(runs []policy.PortRun, fam rules.Family) []runGroup {
	var out []runGroup
	for _, rs := range policy.GroupRuns(runs) {
		if len(rs) == 1 {
			out = append(out, runGroup{rs[0].Spec(), nftRunMatch(rs[0], fam)})
			continue
		}
		ports := make([]string, len(rs))
		for i, r := range rs {
			ports[i] = portsOf(r)
		}
		one := rs[0]
		one.Hi = one.Lo // the match's head: family, address, protocol
		head, _ := strings.CutSuffix(nftRunMatch(one, fam), strconv.Itoa(int(one.Lo)))
		out = append(out, runGroup{policy.GroupSpec(rs), head + "{ " + strings.Join(ports, ", ") + " }"})
	}
	return out
}

// portsOf is a run's ports as nft writes them: 80, or 8000-8010.
func portsOf(r policy.PortRun) string {
	ports := strconv.Itoa(int(r.Lo))
	if r.Hi > r.Lo {
		ports += "-" + strconv.Itoa(int(r.Hi))
	}
	return ports
}

// nftRunMatch matches new connections to a run of published ports.
func nftRunMatch(r policy.PortRun, fam rules.Family) string {
	m := "meta nfproto " + nftName(fam) + " "
	if r.HostIP.IsValid() && !r.HostIP.IsUnspecified() {
		m += nftAddr(fam) + " daddr " + r.HostIP.Unmap().String() + " "
	}
	return m + r.Proto + " dport " + portsOf(r)
}

func nftName(f rules.Family) string {
	if f == rules.IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// nftSets renders one family's sets, the rules that look them up, and its
// published-port chain. Allowed sources that are single addresses go to
// a hash set (fromaddr4), prefixes to an interval set (from4): nft keeps
// an interval concatenation in a pipapo set, whose lookup grows with its
// elements (a 10,000-address list cut new connections to 0.26× of no
// rules; BENCHMARKS.md), while a hash lookup does not.
func nftSets(res policy.Result, fam rules.Family) ([]Set, [][2]string, Chain) {
	suffix := "4"
	addrType := "ipv4_addr"
	if fam == rules.IPv6 {
		suffix, addrType = "6", "ipv6_addr"
	}
	open := Set{Name: "open" + suffix, Type: addrType + " . inet_proto . inet_service"}
	from := Set{Name: "from" + suffix, Type: addrType + " . inet_proto . inet_service . " + addrType, Interval: true}
	fromAddr := Set{Name: "fromaddr" + suffix, Type: from.Type}
	for _, set := range res.Sets {
		for _, e := range set.Sorted() {
			text := fmt.Sprintf("%s . %s . %d", e.Addr, e.Proto, e.Port)
			switch {
			case set.Kind != policy.SetFrom:
				open.Elems = append(open.Elems, text)
			case e.Src.IsSingleIP():
				fromAddr.Elems = append(fromAddr.Elems, text+" . "+e.Src.Addr().String())
			default:
				from.Elems = append(from.Elems, text+" . "+nftPrefix(e.Src.Masked()))
			}
		}
	}
	ports := Chain{Name: "ports" + suffix}
	for _, r := range res.Ports {
		rng := strconv.Itoa(int(r.Lo))
		if r.Hi > r.Lo {
			rng += "-" + strconv.Itoa(int(r.Hi))
		}
		ports.add("allowed published ports "+r.String()+"/"+r.Proto, fmt.Sprintf("meta l4proto %s ct original proto-dst %s %s", r.Proto, rng, pass))
	}
	ports.add("published port not allowed for this container", "goto deny")
	key := nftAddr(fam) + " daddr . meta l4proto . th dport"
	lookups := [][2]string{
		{"allowed ports: set " + open.Name, "ct status dnat " + key + " @" + open.Name + " goto " + ports.Name},
		{"allowed ports by source: set " + fromAddr.Name, "ct status dnat " + key + " . " + nftAddr(fam) + " saddr @" + fromAddr.Name + " goto " + ports.Name},
		{"allowed ports by source: set " + from.Name, "ct status dnat " + key + " . " + nftAddr(fam) + " saddr @" + from.Name + " goto " + ports.Name},
	}
	return []Set{open, fromAddr, from}, lookups, ports
}

// nftPrefix writes a prefix as nft lists it: a host prefix as an address.
func nftPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func nftAllow(a policy.Allow, fam rules.Family) string {
	b := a.Binding
	var parts []string
	if a.Source != "" {
		parts = append(parts, nftSrc(a.Source, fam))
	}
	parts = append(parts, fmt.Sprintf("%s daddr %s %s dport %d ct status dnat", nftAddr(fam), a.Addr, b.Proto, b.ContainerPort))
	if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
		parts = append(parts, fmt.Sprintf("ct original %s daddr %s", nftAddr(fam), b.HostIP.Unmap()))
	}
	parts = append(parts, fmt.Sprintf("ct original proto-dst %d %s", b.HostPort, pass))
	return strings.Join(parts, " ")
}

// GuardTable is the boot-time table of `dockmoat guard` on an nftables
// host: every new connection Docker would DNAT, or route into docker0 or a
// br-* bridge, is dropped (trusted sources excepted) until `dockmoat run`,
// and so is one to the published ports of the last pass (published, IPv4
// then IPv6) on the docker-proxy path (guardInput).
func GuardTable(cfg config.Config, foreign []string, published [2][]policy.PortRun) Ruleset {
	not := notForeign(foreign)
	main := Chain{Name: chainMain, Base: "type filter hook forward priority " + Priority + "; policy accept;"}
	main.add("replies and related traffic", "ct state established,related accept")
	if len(foreign) > 0 {
		main.add("into host bridges: not docker networks", "oifname "+nftNames(foreign)+" accept")
	}
	main.add("guard: leaving docker networks", not("iifname")+`iifname { "docker0", "br-*" } accept`)
	main.add("guard: published ports", "ct status dnat jump "+chainIng)
	main.add("guard: entering docker networks", `oifname { "docker0", "br-*" } jump `+chainIng)
	ing := Chain{Name: chainIng}
	addTrusted(&ing, cfg, "accept")
	ing.add("guard: default deny until dockmoat run", "drop")
	rs := Ruleset{Chains: []Chain{main, ing}}
	if len(published[0])+len(published[1]) > 0 {
		rs.Chains = append(rs.Chains, guardInput(cfg, foreign, published))
	}
	return rs
}

// guardInput is the guard's input chain: the ipt backend's GuardInput.
func guardInput(cfg config.Config, foreign []string, published [2][]policy.PortRun) Chain {
	in := Chain{Name: "input", Base: "type filter hook input priority " + Priority + "; policy accept;"}
	in.add("replies and related traffic", "ct state established,related accept")
	in.add("from the host itself", `iifname "lo" accept`)
	bridges := `"docker0"`
	if len(foreign) == 0 {
		bridges = `{ "docker0", "br-*" }`
	}
	in.add("guard: from docker networks", "iifname "+bridges+" accept")
	for _, src := range rules.SortedPrefixes(cfg.TrustedSources) {
		fam := familyOf(src)
		in.add("trusted source "+src.String(), fmt.Sprintf("%s saddr %s accept", nftAddr(fam), src))
	}
	for _, ifc := range cfg.TrustedIfaces {
		in.add("trusted interface "+ifc, "iifname "+strconv.Quote(ifc)+" accept")
	}
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, g := range runGroups(published[i], fam) {
			in.add("guard: "+g.spec+" via docker-proxy, until dockmoat run", g.match+" drop")
		}
	}
	return in
}

// notForeign returns a match prefix that leaves the host's own br-*
// bridges (rules.ForeignBridges) out of a catch-all on iifname or oifname.
func notForeign(foreign []string) func(key string) string {
	return func(key string) string {
		if len(foreign) == 0 {
			return ""
		}
		return key + " != " + nftNames(foreign) + " "
	}
}

// nftNames is an anonymous set of interface names.
func nftNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return "{ " + strings.Join(q, ", ") + " }"
}

// addTrusted accepts connections Docker DNATed from the trusted sources.
// addDenied refuses the config's deny_sources before any allow: on the
// forward path dropped, on the input path returned unmarked (the check
// table drops it on a published port; the host's other ports are not
// dockmoat's business).
func addDenied(ch *Chain, cfg config.Config, verdict string) {
	for _, src := range rules.SortedPrefixes(cfg.DenySources) {
		fam := familyOf(src)
		ch.add("deny source "+src.String(), fmt.Sprintf("%s saddr %s %s", nftAddr(fam), src, verdict))
	}
	for _, ifc := range cfg.DenyIfaces {
		ch.add("deny interface "+ifc, "iifname "+strconv.Quote(ifc)+" "+verdict)
	}
}

func addTrusted(ing *Chain, cfg config.Config, verdict string) {
	for _, src := range rules.SortedPrefixes(cfg.TrustedSources) {
		fam := familyOf(src)
		ing.add("trusted source "+src.String(), fmt.Sprintf("%s saddr %s ct status dnat %s", nftAddr(fam), src, verdict))
	}
	for _, ifc := range cfg.TrustedIfaces {
		ing.add("trusted interface "+ifc, "iifname "+strconv.Quote(ifc)+" ct status dnat "+verdict)
	}
}

// familyOf is the address family of a source prefix.
func familyOf(p netip.Prefix) rules.Family {
	if p.Addr().Is6() {
		return rules.IPv6
	}
	return rules.IPv4
}

// nftSrc matches a source of rules.SourcesOf: its address, or the
// interface the connection arrived on (nft reads a trailing * in an
// interface name as a glob, as iface:NAME does).
func nftSrc(src string, fam rules.Family) string {
	if ifc, ok := rules.IfaceSource(src); ok {
		return "iifname " + strconv.Quote(ifc)
	}
	return nftAddr(fam) + " saddr " + src
}
