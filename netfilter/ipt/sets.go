package ipt

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/setelem"
)

// setVerifyAge is how long the backend trusts its record of what the
// sets hold. Within it a pass diffs against the record and writes only the
// elements that changed, so one container change costs the same with 10 or
// 10,000 ports; after it (and on any error, drift repair or `plan`) the
// sets are read back in full. Only root can edit the sets: a deleted
// element closes a port (fail-closed) until the next full read.
const setVerifyAge = 10 * time.Second

// SetStore is the backend's access to its sets; package ipset is the
// kernel's (netlink), tests use a fake.
type SetStore interface {
	// Create makes the set if it does not exist.
	Create(name, typ string, fam rules.Family) error
	// List returns the set's elements; exists is false when there is no
	// such set.
	List(name string) (elems []setelem.Elem, exists bool, err error)
	Add(name string, elems []setelem.Elem) error
	Del(name string, elems []setelem.Elem) error
	// Destroy removes the set; a missing set is not an error.
	Destroy(name string) error
}

// BanStore is a SetStore that can also make the ban sets (iptplan.BanSet): the
// backend refuses their sources on every published port when its store
// is one.
type BanStore interface {
	CreateBan(name string, fam rules.Family) error
}

// bans reports whether the backend refuses the ban sets' sources: its
// store makes them, and the config keeps ipsets on (`ipset: off` keeps
// dockmoat off ipsets altogether).
func (b *Backend) bans(cfg config.Config) bool {
	_, ok := b.sets.store.(BanStore)
	return ok && !cfg.NoIPSet
}

// ensureBan makes the family's ban set exist before a batch that looks
// it up is restored; an existing one (the user's bans) is left as it is.
func (b *Backend) ensureBan(fam rules.Family, batch string) error {
	bs, ok := b.sets.store.(BanStore)
	if !ok || !strings.Contains(batch, "--match-set "+iptplan.BanSet(fam)+" ") {
		return nil
	}
	return bs.CreateBan(iptplan.BanSet(fam), fam)
}

// setRecord is the backend's view of its ipsets: state is what the sets
// held when last read or written, readAt when they were last read in full,
// synced per set the generation of the policy.Incremental result the set is
// known to hold (see policy.SetDelta).
type setRecord struct {
	store  SetStore
	state  map[string]map[setelem.Elem]struct{}
	readAt time.Time
	synced map[string]uint64
}

// forget drops the record: the next pass reads the sets in full.
func (s *setRecord) forget() {
	s.state = nil
	clear(s.synced)
}

// diffSets fills the detail's SetAdd, SetDel and SetsMissing from the
// desired sets of p and what the kernel holds (read in full when the record is
// missing or old). Someone else's edits found by a full read are logged.
func (b *Backend) diffSets(p netfilter.FamilyPlan) error {
	if b.sets.state == nil || time.Since(b.sets.readAt) > setVerifyAge {
		if err := b.readSets(); err != nil {
			return err
		}
	}
	d := iptplan.DetailOf(p)
	d.SetAdd, d.SetDel, d.SetsMissing = nil, nil, nil
	for _, set := range p.Result.Sets {
		have, exists := b.sets.state[iptplan.SetName(set.Kind, set.Family)]
		if !exists {
			d.SetsMissing = append(d.SetsMissing, iptplan.SetName(set.Kind, set.Family))
		}
		if dt := set.Delta; dt != nil && dt.Since != 0 && exists && b.sets.synced[iptplan.SetName(set.Kind, set.Family)] == dt.Since {
			// The set holds what the previous result wanted: only the
			// delta can differ, so the N elements need no comparing.
			var add, del []setelem.Elem
			for _, e := range dt.Added {
				if _, ok := have[e]; !ok {
					add = append(add, e)
				}
			}
			for _, e := range dt.Removed {
				if _, ok := have[e]; ok {
					del = append(del, e)
				}
			}
			d.SetAdd, d.SetDel = addElems(d.SetAdd, iptplan.SetName(set.Kind, set.Family), add), addElems(d.SetDel, iptplan.SetName(set.Kind, set.Family), del)
			continue
		}
		missing, extra := setelem.Diff(set.Elems(), have)
		d.SetAdd, d.SetDel = addElems(d.SetAdd, iptplan.SetName(set.Kind, set.Family), missing), addElems(d.SetDel, iptplan.SetName(set.Kind, set.Family), extra)
		if del := d.SetDel[iptplan.SetName(set.Kind, set.Family)]; len(del) > 1 {
			slices.SortFunc(del, setelem.Compare)
		}
	}
	return nil
}

// readSets reads every set of dockmoat's in full into the record, and
// reports someone else's edits found against the old record as drift.
func (b *Backend) readSets() error {
	state := map[string]map[setelem.Elem]struct{}{}
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		if b.families[fam] == nil {
			continue
		}
		for _, kind := range []string{policy.SetOpen, policy.SetFrom} {
			name := iptplan.SetName(kind, fam)
			elems, exists, err := b.sets.store.List(name)
			if err != nil {
				return err
			}
			if !exists {
				continue
			}
			m := setelem.Index(elems)
			if old, ok := b.sets.state[name]; ok && !maps.Equal(old, m) {
				b.log.WithField("set", name).Warn("drift: ipset edited by someone else; putting back dockmoat's elements")
				b.pending = append(b.pending, "set "+name+" edited")
			}
			state[name] = m
		}
	}
	b.sets.state, b.sets.readAt = state, time.Now()
	clear(b.sets.synced)
	return nil
}

// addElems adds elements to a per-set list, making the map only when
// there is something to add.
func addElems(m map[string][]setelem.Elem, name string, elems []setelem.Elem) map[string][]setelem.Elem {
	if len(elems) == 0 {
		return m
	}
	if m == nil {
		m = map[string][]setelem.Elem{}
	}
	m[name] = append(m[name], elems...)
	return m
}

// applySets creates missing sets and applies the element diff of p,
// deletions first. On error the record is dropped, so the next pass reads
// the sets in full.
func (b *Backend) applySets(p netfilter.FamilyPlan) error {
	d := iptplan.DetailOf(p)
	if d.SetChanges() == 0 {
		for _, set := range p.Result.Sets {
			if set.Delta != nil {
				b.sets.synced[iptplan.SetName(set.Kind, set.Family)] = set.Delta.Gen // nothing to write: in step
			}
		}
		return nil
	}
	err := func() error {
		for _, set := range p.Result.Sets {
			if slices.Contains(d.SetsMissing, iptplan.SetName(set.Kind, set.Family)) {
				if err := b.sets.store.Create(iptplan.SetName(set.Kind, set.Family), iptplan.SetType(set.Kind), set.Family); err != nil {
					return err
				}
			}
			if err := b.sets.store.Del(iptplan.SetName(set.Kind, set.Family), d.SetDel[iptplan.SetName(set.Kind, set.Family)]); err != nil {
				return err
			}
			if err := b.sets.store.Add(iptplan.SetName(set.Kind, set.Family), d.SetAdd[iptplan.SetName(set.Kind, set.Family)]); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		b.sets.forget()
		return fmt.Errorf("updating ipsets: %w", err)
	}
	for _, set := range p.Result.Sets {
		b.sets.synced[iptplan.SetName(set.Kind, set.Family)] = 0
		if set.Delta != nil {
			b.sets.synced[iptplan.SetName(set.Kind, set.Family)] = set.Delta.Gen
		}
		m := b.sets.state[iptplan.SetName(set.Kind, set.Family)]
		if m == nil {
			m = map[setelem.Elem]struct{}{}
			b.sets.state[iptplan.SetName(set.Kind, set.Family)] = m
		}
		for _, e := range d.SetDel[iptplan.SetName(set.Kind, set.Family)] {
			delete(m, e)
		}
		for _, e := range d.SetAdd[iptplan.SetName(set.Kind, set.Family)] {
			m[e] = struct{}{}
		}
	}
	return nil
}

// ForgetSets drops the backend's record of its sets: the next pass reads
// them back in full, as it does every setVerifyAge.
func (b *Backend) ForgetSets() { b.sets.readAt = time.Time{} }
