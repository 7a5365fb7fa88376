package policy

import (
	"cmp"
	"slices"

	"github.com/dockmoat/dockmoat/rules"
)

// appendLimits adds the limited decisions of ds.
func appendLimits(out []rules.Limit, ds []rules.Decision) []rules.Limit {
	for _, d := range ds {
		if d.Open && !d.Limit.IsZero() {
			out = append(out, rules.Limit{Container: d.Container, Binding: d.Binding, Rate: d.Limit})
		}
	}
	return out
}

func sortLimits(ls []rules.Limit) {
	slices.SortFunc(ls, func(a, b rules.Limit) int {
		return cmp.Or(rules.ComparePorts(a.Binding, b.Binding), cmp.Compare(a.Container, b.Container))
	})
}
