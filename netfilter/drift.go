package netfilter

import (
	"slices"
	"sort"
)

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
func JumpDrift(what, chain string, pos []int) []string {
	switch {
	case len(pos) == 0:
		return []string{what + " missing"}
	case pos[0] != 1:
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
