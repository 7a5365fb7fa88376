// Package setelem is the element of an allow set: a container address,
// protocol and container port, and for sets of allowed sources the source
// prefix. The policy groups allows into sets of these (rules), both
// backends install them (netfilter/ipt as ipsets, netfilter/nft as nft
// sets), the format readers return them (netfilter/ipset, netfilter/iptsave)
// and audit looks packets up in them. It is a leaf: it imports nothing of
// dockmoat's, so that none of those packages has to import another only
// for this type.
package setelem

import (
	"cmp"
	"net/netip"
	"strconv"
)

// Elem is one element. Src is invalid in a set that opens to everyone.
type Elem struct {
	Addr  netip.Addr
	Proto string
	Port  uint16
	Src   netip.Prefix
}

// String renders the element the way `ipset save` does.
func (e Elem) String() string {
	s := e.Addr.String() + "," + e.Proto + ":" + strconv.Itoa(int(e.Port))
	if e.Src.IsValid() {
		s += "," + e.Src.String()
	}
	return s
}

// Compare orders elements for stable output.
func Compare(a, b Elem) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port),
		a.Src.Addr().Compare(b.Src.Addr()), cmp.Compare(a.Src.Bits(), b.Src.Bits()))
}

// Diff returns the wanted elements not held and the held ones not wanted
// (in no particular order). Elements are unique, so when every element
// held is wanted there is nothing extra and the wanted ones are never
// indexed. It is the one set comparison: the iptables backend's ipsets,
// the nft table's sets and audit all use it.
func Diff[E comparable](want []E, have map[E]struct{}) (missing, extra []E) {
	held := 0
	for _, e := range want {
		if _, ok := have[e]; ok {
			held++
		} else {
			missing = append(missing, e)
		}
	}
	if held == len(have) {
		return missing, nil
	}
	wanted := Index(want)
	for e := range have {
		if _, ok := wanted[e]; !ok {
			extra = append(extra, e)
		}
	}
	return missing, extra
}

// Index indexes elements for Diff.
func Index[E comparable](elems []E) map[E]struct{} {
	m := make(map[E]struct{}, len(elems))
	for _, e := range elems {
		m[e] = struct{}{}
	}
	return m
}
