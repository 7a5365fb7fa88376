// Package verdict holds what the audit's evaluators share: the first
// packet of a new connection, and what a ruleset did with it (the
// deciding rule and the path to it). The evaluators (audit/ipteval for
// iptables text, audit/nfteval for the nftables JSON listing) take a
// Packet and return a Verdict; package audit builds the packets and
// reads the verdicts.
package verdict

import (
	"net/netip"

	"github.com/dockmoat/dockmoat/netfilter/iptsave"
)

// Packet is the first packet of a new connection, as the filter table sees
// it after Docker's DNAT (FORWARD path) or without DNAT (INPUT path).
type Packet struct {
	Src, Dst     netip.Addr
	Proto        string // tcp, udp, sctp
	SPort, DPort uint16
	In, Out      string   // interfaces; Out is "" on the INPUT path
	States       []string // conntrack states: NEW, plus DNAT when DNATed
	OrigDst      netip.Addr
	OrigDstPort  uint16
	DstLocal     bool // the destination is an address of this host
	// Flags are a TCP first packet's flags: "SYN", or SYN with PSH
	// and/or URG (variants.go); "" means "SYN".
	Flags string
	// Recent says the client has history in every -m recent list (a
	// client can knock first): --rcheck and --update match.
	Recent bool
	// Mark is the packet mark as far as known: the bits of MarkKnown.
	// The evaluator keeps it (MARK --set-xmark); dockmoat's own bit
	// (rules.PassMark) starts known and clear, any other bit unknown (a
	// mangle rule may have set it).
	Mark, MarkKnown uint32
}

// Result of an evaluation.
type Result int

const (
	Unknown Result = iota
	Accept
	Drop
)

func (r Result) String() string {
	return [...]string{"unknown", "accept", "drop"}[r]
}

// Verdict tells what happened to the packet and which rule decided.
type Verdict struct {
	Result Result
	Chain  string // chain of the deciding rule (or policy)
	Rule   string // the deciding rule's text, "policy ACCEPT" for a policy
	// Via lists the rules that jumped into Chain, outermost first.
	Via []iptsave.Rule
	// Why explains an Unknown result.
	Why string
	// Returned lists the rules whose RETURN the packet took on its way,
	// innermost first (a goto whose chain returned counts), e.g. the
	// dockmoat allow that handed it back to Docker's ACCEPT.
	Returned []iptsave.Rule
	// Path is every rule that sent the packet somewhere (a jump, goto,
	// RETURN, or the verdict), and every chain it fell off, in order:
	// what `audit --explain` prints.
	Path []Step
}

// Step is one move of the packet: the rule (its text as iptables-save
// prints it) or "end of chain" / "policy …" in Chain.
type Step struct {
	Chain string `json:"chain"`
	Rule  string `json:"rule"`
}
