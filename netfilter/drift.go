package netfilter

import (
	"slices"
	"sort"
)

// HashedChain is a backend's chain as the comparisons here see it: a name
// and the hashes of its rules in order.
type HashedChain interface {
	ChainName() string
	Hashes() []string
}

// ChangedChains lists, in order, the chains of want that the kernel does
// not hold as they are (found: rule hashes per chain): missing, or with
// other rules. It is the one chain comparison of both backends.
func ChangedChains[C HashedChain](want []C, found map[string][]string) []string {
	var changed []string
	for _, ch := range want {
		if got, ok := found[ch.ChainName()]; !ok || !slices.Equal(got, ch.Hashes()) {
			changed = append(changed, ch.ChainName())
		}
	}
	return changed
}

// HashesOf is the rule hashes per chain, as ChainDrift and Intact take
// the state last installed.
func HashesOf[C HashedChain](chains []C) map[string][]string {
	out := make(map[string][]string, len(chains))
	for _, ch := range chains {
		out[ch.ChainName()] = ch.Hashes()
	}
	return out
}

// ChainDrift tells how the owned chains found (rule hashes per chain)
// differ from those last installed, one line per chain, prefixed with
// prefix ("IPv4: "): deleted, flushed, reordered or edited.
func ChainDrift(prefix string, found, last map[string][]string) []string {
	names := make([]string, 0, len(last))
	for name := range last {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		want := last[name]
		got, ok := found[name]
		switch {
		case !ok:
			out = append(out, prefix+"chain "+name+" deleted")
		case len(got) == 0 && len(want) > 0:
			out = append(out, prefix+"chain "+name+" flushed")
		case !slices.Equal(got, want):
			if slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
				out = append(out, prefix+"rule order changed in "+name)
			} else {
				out = append(out, prefix+"chain "+name+" edited")
			}
		}
	}
	return out
}

// JumpDrift tells how a jump of dockmoat's that belongs first in chain
// was found at positions pos: missing, moved or duplicated (nil: in place).
func JumpDrift(what, chain string, pos []int) []string { return JumpDriftAt(what, chain, pos, 1) }

// JumpDriftAt is JumpDrift for a jump that belongs at position want.
func JumpDriftAt(what, chain string, pos []int, want int) []string {
	switch {
	case len(pos) == 0:
		return []string{what + " missing"}
	case pos[0] != want:
		return []string{what + " moved (rule order changed in " + chain + ")"}
	case len(pos) > 1:
		return []string{what + " duplicated"}
	}
	return nil
}

// Intact reports whether every chain last installed is found unchanged.
func Intact(found, last map[string][]string) bool {
	for name, want := range last {
		if got, ok := found[name]; !ok || !slices.Equal(got, want) {
			return false
		}
	}
	return true
}
