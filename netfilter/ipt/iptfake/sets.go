package iptfake

import (
	"maps"
	"slices"

	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/setelem"
)

// Sets is an in-memory ipt.SetStore that counts element writes and can
// tell when each set was created relative to the fake's restores.
type Sets struct {
	Sets       map[string]map[setelem.Elem]bool
	Adds, Dels int
	Lists      int
	FailAdd    error // returned by Add with elements
	// RestoresAt reports how many restores the rig had done, CreatedAt
	// that count at each set's Create.
	RestoresAt func() int
	CreatedAt  map[string]int
}

// NewSets returns an empty store.
func NewSets() *Sets {
	return &Sets{Sets: map[string]map[setelem.Elem]bool{}, CreatedAt: map[string]int{}}
}

// Create implements ipt.SetStore.
func (f *Sets) Create(name, typ string, fam rules.Family) error {
	if _, ok := f.Sets[name]; !ok {
		f.Sets[name] = map[setelem.Elem]bool{}
		if f.RestoresAt != nil {
			f.CreatedAt[name] = f.RestoresAt()
		}
	}
	return nil
}

// List implements ipt.SetStore.
func (f *Sets) List(name string) ([]setelem.Elem, bool, error) {
	f.Lists++
	s, ok := f.Sets[name]
	return slices.Collect(maps.Keys(s)), ok, nil
}

// Add implements ipt.SetStore.
func (f *Sets) Add(name string, elems []setelem.Elem) error {
	if f.FailAdd != nil && len(elems) > 0 {
		return f.FailAdd
	}
	for _, e := range elems {
		f.Sets[name][e] = true
		f.Adds++
	}
	return nil
}

// Del implements ipt.SetStore.
func (f *Sets) Del(name string, elems []setelem.Elem) error {
	for _, e := range elems {
		delete(f.Sets[name], e)
		f.Dels++
	}
	return nil
}

// Destroy implements ipt.SetStore.
func (f *Sets) Destroy(name string) error {
	delete(f.Sets, name)
	return nil
}

// Has reports whether set name holds elem (as text).
func (f *Sets) Has(name, elem string) bool {
	for e := range f.Sets[name] {
		if e.String() == elem {
			return true
		}
	}
	return false
}

// CreateBan implements ipt.BanStore: the set is made if missing, and an
// existing one keeps its elements.
func (f *Sets) CreateBan(name string, fam rules.Family) error {
	return f.Create(name, "hash:net", fam)
}
