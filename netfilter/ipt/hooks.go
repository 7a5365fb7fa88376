package ipt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
)

// fixHooks puts the jumps a plan needs at the top of their chains (the
// hook and the check's jump in DOCKER-USER, or FORWARD while DOCKER-USER
// is missing, unless input-only; the input hook when DOCKMOAT-INPUT is
// wanted), removes the pair left in FORWARD once DOCKER-USER is hooked
// again, and removes the input hook when that chain is no longer wanted,
// before the chain itself goes. A pass and a repair both use it. fixed
// says whether anything was changed.
func fixHooks(ctx context.Context, t *Tables, p *iptplan.Detail) (fixed bool, err error) {
	if !p.InputOnly && !p.HooksInPlace() {
		if err := ensureJumps(ctx, t, p.HookIn, hookPair()); err != nil {
			return false, err
		}
		fixed = true
	}
	if !p.InputOnly && p.HookIn != "FORWARD" && p.StrayHooks+p.StrayChecks > 0 {
		// DOCKER-USER is back and hooked (above): the pair that stood in
		// FORWARD meanwhile goes only now, so no instant is unhooked; the
		// check first (alone, it would drop what no hook marked).
		if err := removeJumps(t, "FORWARD", iptplan.CheckSpec(), p.StrayChecks); err != nil {
			return false, err
		}
		if err := removeJumps(t, "FORWARD", iptplan.HookSpec(), p.StrayHooks); err != nil {
			return false, err
		}
		fixed = true
	}
	switch {
	case p.InputHooksInPlace():
	case p.InputChain:
		if err := ensureJumps(ctx, t, iptplan.InputHookChain, inputPair()); err != nil {
			return fixed, err
		}
		fixed = true
	default:
		// The check's jump first: alone, it drops what no hook marked.
		if err := removeJumps(t, iptplan.InputHookChain, iptplan.InputCheckSpec(), len(p.Observed.InputCheck)); err != nil {
			return fixed, err
		}
		if err := removeJumps(t, iptplan.InputHookChain, iptplan.InputHookSpec(), len(p.Observed.InputHook)); err != nil {
			return fixed, err
		}
		fixed = true
	}
	return fixed, nil
}

// removeJumps deletes n copies of a jump; one already gone is fine.
func removeJumps(t *Tables, chain string, spec []string, n int) error {
	for range n {
		if err := t.Delete("filter", chain, spec...); err != nil && !isNotExist(err) {
			return fmt.Errorf("removing dockmoat's jump from %s: %w", chain, err)
		}
	}
	return nil
}

// jump is a rule of dockmoat's in a chain it does not own: its spec, and
// how to recognise it (or a look-alike) in a listing.
type jump struct {
	spec []string
	is   func(string) bool
}

// hookPair is the hook, then the jump to the check.
func hookPair() []jump {
	return []jump{{iptplan.HookSpec(), iptplan.IsHook}, {iptplan.CheckSpec(), iptplan.IsCheck}}
}

// ensureHook puts the hook alone at position 1 of DOCKER-USER (the guard,
// whose chains have no check).
func ensureHook(ctx context.Context, t *Tables, chain string) error {
	return ensureJumps(ctx, t, chain, []jump{{iptplan.HookSpec(), iptplan.IsHook}})
}

// inputPair is the input hook, then the jump to its check.
func inputPair() []jump {
	return []jump{{iptplan.InputHookSpec(), iptplan.IsInputHook}, {iptplan.InputCheckSpec(), iptplan.IsInputCheck}}
}

// ensureJumps puts jumps of dockmoat's at positions 1, 2, … of a chain and
// removes any other copy, in one iptables-restore batch: every copy is
// deleted by its rule (not by a position read earlier, which a concurrent
// writer may have shifted onto someone else's rule) and one of each
// inserted, atomically, so the chain is never without them. It is
// idempotent. A look-alike (a jump's comment and target, other matches)
// can only be deleted by position; that is done after, and only for such
// rules.
func ensureJumps(ctx context.Context, t *Tables, chain string, jumps []jump) error {
	lines, err := t.List("filter", chain)
	if err != nil {
		return fmt.Errorf("listing %s: %w", chain, err)
	}
	inPlace, lookAlikes := true, false
	bt := iptsave.NewBatch()
	for i, j := range jumps {
		pos := jumpPositions(lines, j.is)
		exact := jumpPositions(lines, func(l string) bool { return slices.Equal(iptsave.Tokenize(l)[2:], j.spec) })
		inPlace = inPlace && slices.Equal(pos, []int{i + 1}) && slices.Equal(exact, []int{i + 1})
		lookAlikes = lookAlikes || len(pos) != len(exact)
		for range exact {
			bt.Line(iptsave.Command("-D "+chain, j.spec))
		}
	}
	if inPlace {
		return nil
	}
	for i, j := range jumps {
		bt.Line(iptsave.Command("-I "+chain+" "+strconv.Itoa(i+1), j.spec))
	}
	if err := t.Restore(ctx, []byte(bt.Commit())); err != nil {
		return fmt.Errorf("putting dockmoat's jumps at the top of %s: %w", chain, err)
	}
	if !lookAlikes {
		return nil
	}
	return removeLookAlikes(t, chain, jumps)
}

// removeLookAlikes deletes, by position, every rule a jump's is accepts
// but the one in place (position i+1 for jump i).
func removeLookAlikes(t *Tables, chain string, jumps []jump) error {
	lines, err := t.List("filter", chain)
	if err != nil {
		return fmt.Errorf("listing %s: %w", chain, err)
	}
	var del []int
	for i, j := range jumps {
		for _, p := range jumpPositions(lines, j.is) {
			if p != i+1 {
				del = append(del, p)
			}
		}
	}
	// From the bottom, so that positions above stay valid.
	slices.Sort(del)
	for k := len(del) - 1; k >= 0; k-- {
		if err := t.DeleteById("filter", chain, del[k]); err != nil && !isNotExist(err) {
			return fmt.Errorf("removing a copy of dockmoat's jump at %s position %d: %w", chain, del[k], err)
		}
	}
	return nil
}

// jumpPositions reads go-iptables List output (a "-N CHAIN" line, then
// one "-A" line per rule) and returns the 1-based positions of a jump.
func jumpPositions(lines []string, is func(string) bool) []int {
	var pos []int
	n := 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		n++
		if is(l) {
			pos = append(pos, n)
		}
	}
	return pos
}

func isNotExist(err error) bool {
	var e *iptables.Error
	if errors.As(err, &e) && e.IsNotExist() {
		return true
	}
	var nf interface{ IsNotExist() bool }
	return errors.As(err, &nf) && nf.IsNotExist()
}
