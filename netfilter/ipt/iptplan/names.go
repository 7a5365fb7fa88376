package iptplan

import (
	"github.com/dockmoat/dockmoat/netfilter/ipset"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// Chain names and the comments of dockmoat's jumps (iptables allows 28
// characters). Every chain of dockmoat's is matched by exact name
// (IsOwnedChain).
const (
	ChainMain    = "DOCKMOAT"
	ChainIngress = "DOCKMOAT-INGRESS"
	// HookChain is Docker's chain for user rules; dockmoat adds exactly one
	// rule there (the hook) and never edits anything else in it.
	HookChain = "DOCKER-USER"
	// HookComment marks the hook rule in DOCKER-USER.
	HookComment = "dockmoat:hook"
	// ChainPass marks a packet dockmoat's chains let through
	// (rules.PassMark); ChainCheck, reached by a second jump after the
	// hook, drops a new DNATed connection without the mark, so that a
	// flush of any one of dockmoat's chains, or a deleted hook, closes
	// rather than opens.
	ChainPass  = "DOCKMOAT-PASS"
	ChainCheck = "DOCKMOAT-CHECK"
	// CheckComment marks the jump to ChainCheck.
	CheckComment = "dockmoat:check"
	// ChainPorts and ChainDeny are the set layout's: the published-port
	// check, and the common tail (ufw route rules, log, drop) that both
	// it and INGRESS end in (rules/policy/sets.go).
	ChainPorts = "DOCKMOAT-PORTS"
	ChainDeny  = "DOCKMOAT-DENY"
	// ChainEgress holds every deny container's allowed destinations and
	// its final reject; DOCKMOAT (forward) and DOCKMOAT-INPUT jump to it
	// for new connections from those containers.
	ChainEgress = "DOCKMOAT-EGRESS"
)

// UFWChain holds the family's `ufw route` rules (ufw names its ip6tables
// chains ufw6-…).
func UFWChain(fam rules.Family) string {
	if fam == rules.IPv6 {
		return "ufw6-user-forward"
	}
	return "ufw-user-forward"
}

// UFWInputChain holds the family's plain `ufw allow` and `ufw deny`
// rules (INPUT).
func UFWInputChain(fam rules.Family) string {
	if fam == rules.IPv6 {
		return "ufw6-user-input"
	}
	return "ufw-user-input"
}

// BanSet is the family's ban set (ipset hash:net, elements may carry a
// timeout): dockmoat creates it and never flushes or rewrites it, so that
// `ipset add dockmoat-ban4 ADDR [timeout N]`, a fail2ban action or the
// CrowdSec bouncer refuse a source on every published port without
// knowing dockmoat's chains. Uninstall destroys it.
func BanSet(fam rules.Family) string {
	if fam == rules.IPv6 {
		return "dockmoat-ban6"
	}
	return "dockmoat-ban4"
}

// SetName is the ipset name of an allow set's kind in a family (at most
// 31 characters).
func SetName(kind string, fam rules.Family) string {
	if fam == rules.IPv6 {
		return "DOCKMOAT-" + kind + "-V6"
	}
	return "DOCKMOAT-" + kind + "-V4"
}

// SetType is the ipset type of an allow set's kind.
func SetType(kind string) string {
	if kind == policy.SetFrom {
		return ipset.TypeIPPortNet
	}
	return ipset.TypeIPPort
}

// The docker-proxy path (rules/policy/proxy.go): DOCKMOAT-INPUT, reached by a
// jump at the top of INPUT.
const (
	ChainInput       = "DOCKMOAT-INPUT"
	InputHookComment = "dockmoat:input"
	// ChainInputCheck, reached by a second jump after the input hook,
	// drops a new connection to a published binding that DOCKMOAT-INPUT did
	// not let through (ChainCheck's counterpart on the docker-proxy path).
	ChainInputCheck   = "DOCKMOAT-INPUT-CHECK"
	InputCheckComment = "dockmoat:input-check"
	// InputHookChain is the built-in chain holding the input hook.
	InputHookChain = "INPUT"
)

// IsOwnedChain reports whether a chain is one dockmoat creates. Names are
// matched exactly: a user's DOCKMOAT_LOG or DOCKMOAT-MINE is foreign and
// is never flushed, rewritten or deleted.
func IsOwnedChain(name string) bool {
	switch name {
	case ChainMain, ChainIngress, ChainPorts, ChainDeny, ChainInput, ChainEgress, ChainPass, ChainCheck, ChainInputCheck:
		return true
	}
	return false
}

// setName is the ipset name of a set of the policy.
func setName(s policy.Set) string { return SetName(s.Kind, s.Family) }
