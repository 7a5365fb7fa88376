package policy

import (
	"maps"
	"reflect"
	"slices"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// Memo remembers each container's decisions between passes, so that a
// pass over 10,000 containers where one changed re-decides one: the rest
// costs an equality check each. It changes no result (Build with and
// without a Memo returns the same), only the time it takes. A Memo is not
// safe for concurrent use; each backend holds one, and the loop
// serialises its calls.
type Memo struct {
	cfg     config.Config
	entries map[string]*memoEntry
	gen     uint64
}

type memoEntry struct {
	c         rules.Container
	decisions []rules.Decision
	problems  []rules.Problem
	gen       uint64
}

// NewMemo returns an empty memo.
func NewMemo() *Memo { return &Memo{entries: map[string]*memoEntry{}} }

// begin starts a Build: a changed configuration forgets everything.
func (m *Memo) begin(cfg config.Config) {
	if !reflect.DeepEqual(m.cfg, cfg) {
		m.cfg = cfg
		clear(m.entries)
	}
	m.gen++
}

// decide returns the memoised decisions of c, or decides and remembers.
func (m *Memo) decide(cfg config.Config, c *rules.Container) ([]rules.Decision, []rules.Problem) {
	if m == nil {
		return rules.Decide(cfg, *c)
	}
	if e, ok := m.entries[c.ID]; ok && sameContainer(&e.c, c) {
		e.gen = m.gen
		return e.decisions, e.problems
	}
	d, p := rules.Decide(cfg, *c)
	m.entries[c.ID] = &memoEntry{c: cloneContainer(*c), decisions: d, problems: p, gen: m.gen}
	return d, p
}

// end forgets containers the last Build did not see.
func (m *Memo) end() {
	maps.DeleteFunc(m.entries, func(_ string, e *memoEntry) bool { return e.gen != m.gen })
}

func sameContainer(a, b *rules.Container) bool {
	if a.Rev != 0 && a.Rev == b.Rev && a.ID == b.ID {
		return true
	}
	return a.ID == b.ID && a.Name == b.Name && maps.Equal(a.Labels, b.Labels) &&
		slices.Equal(a.Ports, b.Ports) && slices.Equal(a.Endpoints, b.Endpoints)
}

// cloneContainer copies c so later changes to the caller's snapshot (the
// Docker cache reuses its maps and slices) cannot alter the memo.
func cloneContainer(c rules.Container) rules.Container {
	c.Labels = maps.Clone(c.Labels)
	c.Ports = slices.Clone(c.Ports)
	c.Endpoints = slices.Clone(c.Endpoints)
	return c
}
