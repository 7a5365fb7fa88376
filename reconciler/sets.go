package reconciler

import (
	"fmt"
	"slices"
	"time"

	"github.com/dockmoat/dockmoat/rules"
)

// setVerifyAge is how long the reconciler trusts its record of what the
// sets hold. Within it a pass diffs against the record and writes only the
// elements that changed, so one container change costs the same with 10 or
// 10,000 ports; after it (and on any error, drift repair or `plan`) the
// sets are read back in full. Only root can edit the sets: a deleted
// element closes a port (fail-closed) until the next full read.
const setVerifyAge = 10 * time.Second

// diffSets fills p.SetAdd, p.SetDel and p.SetsMissing from the desired
// sets of p and what the kernel holds (read in full when the record is
// missing or old). Someone else's edits found by a full read are logged.
func (r *Reconciler) diffSets(p *FamilyPlan) error {
	fullRead := r.setState == nil || time.Since(r.setRead) > setVerifyAge
	if fullRead {
		state := map[string]map[rules.SetElem]struct{}{}
		for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			if r.families[fam] == nil {
				continue
			}
			for _, kind := range []string{rules.SetOpen, rules.SetFrom} {
				name := rules.SetName(kind, fam)
				elems, exists, err := r.sets.List(name)
				if err != nil {
					return err
				}
				if !exists {
					continue
				}
				m := make(map[rules.SetElem]struct{}, len(elems))
				for _, e := range elems {
					m[e] = struct{}{}
				}
				if old, ok := r.setState[name]; ok && !sameElems(old, m) {
					r.log.WithField("set", name).Warn("drift: ipset edited by someone else; putting back dockmoat's elements")
					r.pendingDrift = append(r.pendingDrift, "set "+name+" edited")
				}
				state[name] = m
			}
		}
		r.setState, r.setRead = state, time.Now()
		clear(r.setSynced)
	}
	p.SetAdd, p.SetDel, p.SetsMissing = nil, nil, nil
	for _, set := range p.Result.Ruleset.Sets {
		have, exists := r.setState[set.Name]
		if !exists {
			p.SetsMissing = append(p.SetsMissing, set.Name)
		}
		if d := set.Delta; d != nil && d.Since != 0 && exists && r.setSynced[set.Name] == d.Since {
			// The set holds what the previous result wanted: only the
			// delta can differ, so the N elements need no comparing.
			for _, e := range d.Added {
				if _, ok := have[e]; !ok {
					add(&p.SetAdd, set.Name, e)
				}
			}
			for _, e := range d.Removed {
				if _, ok := have[e]; ok {
					add(&p.SetDel, set.Name, e)
				}
			}
			continue
		}
		// Elements are unique, so when every element held is wanted there
		// is nothing to delete and no need to index the wanted ones.
		held := 0
		for _, e := range set.Elems {
			if _, ok := have[e]; ok {
				held++
			} else {
				add(&p.SetAdd, set.Name, e)
			}
		}
		if held < len(have) {
			want := make(map[rules.SetElem]struct{}, len(set.Elems))
			for _, e := range set.Elems {
				want[e] = struct{}{}
			}
			for e := range have {
				if _, ok := want[e]; !ok {
					add(&p.SetDel, set.Name, e)
				}
			}
		}
		if d := p.SetDel[set.Name]; len(d) > 1 {
			slices.SortFunc(d, rules.CompareSetElems)
		}
	}
	return nil
}

func add(m *map[string][]rules.SetElem, name string, e rules.SetElem) {
	if *m == nil {
		*m = map[string][]rules.SetElem{}
	}
	(*m)[name] = append((*m)[name], e)
}

func sameElems(a, b map[rules.SetElem]struct{}) bool {
	if len(a) != len(b) {
		return false
	}
	for e := range a {
		if _, ok := b[e]; !ok {
			return false
		}
	}
	return true
}

// applySets creates missing sets and applies the element diff of p,
// deletions first. On error the record is dropped, so the next pass reads
// the sets in full.
func (r *Reconciler) applySets(p FamilyPlan) error {
	if p.setChanges() == 0 {
		for _, set := range p.Result.Ruleset.Sets {
			if set.Delta != nil {
				r.setSynced[set.Name] = set.Delta.Gen // nothing to write: in step
			}
		}
		return nil
	}
	err := func() error {
		for _, set := range p.Result.Ruleset.Sets {
			if slices.Contains(p.SetsMissing, set.Name) {
				if err := r.sets.Create(set.Name, rules.SetType(set.Kind), set.Family); err != nil {
					return err
				}
			}
			if err := r.sets.Del(set.Name, p.SetDel[set.Name]); err != nil {
				return err
			}
			if err := r.sets.Add(set.Name, p.SetAdd[set.Name]); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		r.setState = nil
		clear(r.setSynced)
		return fmt.Errorf("updating ipsets: %w", err)
	}
	for _, set := range p.Result.Ruleset.Sets {
		r.setSynced[set.Name] = 0
		if set.Delta != nil {
			r.setSynced[set.Name] = set.Delta.Gen
		}
		m := r.setState[set.Name]
		if m == nil {
			m = map[rules.SetElem]struct{}{}
			r.setState[set.Name] = m
		}
		for _, e := range p.SetDel[set.Name] {
			delete(m, e)
		}
		for _, e := range p.SetAdd[set.Name] {
			m[e] = struct{}{}
		}
	}
	return nil
}
