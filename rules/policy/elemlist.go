package policy

import (
	"slices"
	"sync"

	"github.com/dockmoat/dockmoat/setelem"
)

// elemChunkSize is how many elements a chunk holds: a change copies at
// most two chunks (5 KiB each) instead of the whole set (800 KiB at
// 10,000 elements, ~0.4 ms on this kind of machine), and a result copies
// one pointer per chunk.
const elemChunkSize = 64

// elemList is Incremental's refcounted set of elements, recording which
// elements came or went since the last delta. The elements sit in
// fixed-size chunks that results share (view): a chunk a result may hold
// is copied before it is written (copy on write, by epoch).
type elemList struct {
	chunks []*elemChunk
	n      int
	counts []int                 // refcount of each element, by position
	at     map[setelem.Elem]int  // position of each element
	was    map[setelem.Elem]bool // presence before the first change since the last delta
	// epoch stamps the chunks written since the last view; a chunk with
	// an older stamp is shared with a result.
	epoch   uint64
	last    *elemView // the last view, handed out again while nothing changed
	lastGen uint64
	fresh   bool // no previous result to be a delta of
}

type elemChunk struct {
	elems [elemChunkSize]setelem.Elem
	epoch uint64
}

// The generation counts Build calls and never restarts, so a Since of a
// reset state cannot match a caller's record of an older one.

func newElemList(n int) *elemList {
	return &elemList{at: make(map[setelem.Elem]int, n), was: map[setelem.Elem]bool{}, fresh: true, epoch: 1}
}

// has reports whether e is in the list.
func (l *elemList) has(e setelem.Elem) bool {
	_, ok := l.at[e]
	return ok
}

func (l *elemList) get(i int) setelem.Elem { return l.chunks[i/elemChunkSize].elems[i%elemChunkSize] }

// set writes position i, copying its chunk first if a view holds it.
func (l *elemList) set(i int, e setelem.Elem) {
	ci := i / elemChunkSize
	if c := l.chunks[ci]; c.epoch != l.epoch {
		cp := *c
		cp.epoch = l.epoch
		l.chunks[ci] = &cp
	}
	l.chunks[ci].elems[i%elemChunkSize] = e
}

func (l *elemList) add(e setelem.Elem, by int) {
	i, before := l.at[e]
	if !l.fresh {
		if _, seen := l.was[e]; !seen {
			l.was[e] = before // a fresh list has no delta to record
		}
	}
	switch {
	case !before && by > 0:
		if l.n%elemChunkSize == 0 && l.n/elemChunkSize == len(l.chunks) {
			l.chunks = append(l.chunks, &elemChunk{epoch: l.epoch})
		}
		l.last = nil
		l.at[e] = l.n
		l.set(l.n, e)
		l.counts = append(l.counts, by)
		l.n++
	case before:
		if l.counts[i] += by; l.counts[i] > 0 {
			return
		}
		// Swap-delete: the last element takes the freed position.
		l.last = nil
		last := l.n - 1
		if i != last {
			moved := l.get(last)
			l.set(i, moved)
			l.counts[i] = l.counts[last]
			l.at[moved] = i
		}
		l.counts = l.counts[:last]
		l.n = last
		if l.n%elemChunkSize == 0 {
			l.chunks = l.chunks[:l.n/elemChunkSize]
		}
		delete(l.at, e)
	}
}

// view returns the elements as they are now, for a result to keep: the
// chunks are shared, and the list copies any it writes after this.
func (l *elemList) view() *elemView {
	if l.last == nil {
		l.last = &elemView{chunks: slices.Clone(l.chunks), n: l.n}
		l.epoch++
	}
	return l.last
}

// delta returns what changed since the previous call and starts anew.
func (l *elemList) delta(gen uint64) *SetDelta {
	d := &SetDelta{Gen: gen}
	if !l.fresh {
		d.Since = l.lastGen
		for e, was := range l.was {
			switch now := l.has(e); {
			case now && !was:
				d.Added = append(d.Added, e)
			case was && !now:
				d.Removed = append(d.Removed, e)
			}
		}
	}
	clear(l.was)
	l.fresh, l.lastGen = false, gen
	return d
}

// elemView is an immutable copy of an elemList's content, sharing its
// chunks; flat copies it out once, when someone asks.
type elemView struct {
	chunks []*elemChunk
	n      int
	once   sync.Once
	all    []setelem.Elem
}

func (v *elemView) flat() []setelem.Elem {
	v.once.Do(func() {
		v.all = make([]setelem.Elem, 0, v.n)
		for i, c := range v.chunks {
			v.all = append(v.all, c.elems[:min(elemChunkSize, v.n-i*elemChunkSize)]...)
		}
	})
	return v.all
}
