package ipt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
)

// fixHooks puts the jumps a plan needs at the top of their chains (the
// hook in DOCKER-USER, or FORWARD while DOCKER-USER is missing, unless
// input-only; the input hook when DOCKMOAT-INPUT is wanted), removes a
// hook left in FORWARD once DOCKER-USER is hooked again, and removes the
// input hook when that chain is no longer wanted, before the chain itself
// goes. A pass and a repair both use it. fixed says whether anything was
// changed.
func fixHooks(ctx context.Context, t *Tables, p netfilter.FamilyPlan) (fixed bool, err error) {
	if !p.InputOnly && !slices.Equal(p.HookPositions, []int{1}) {
		if err := ensureHook(ctx, t, p.HookIn); err != nil {
			return false, err
		}
		fixed = true
	}
	if !p.InputOnly && p.HookIn != "FORWARD" && p.StrayHooks > 0 {
		// DOCKER-USER is back and hooked (above): the copy that stood in
		// FORWARD meanwhile goes only now, so no instant is unhooked.
		if err := removeJumps(t, "FORWARD", HookSpec(), p.StrayHooks); err != nil {
			return false, err
		}
		fixed = true
	}
	switch {
	case p.WantsInput() && !slices.Equal(p.Observed.InputHook, []int{1}):
		if err := ensureInputHook(ctx, t); err != nil {
			return fixed, err
		}
		fixed = true
	case !p.WantsInput() && len(p.Observed.InputHook) > 0:
		if err := removeJumps(t, rules.InputHookChain, InputHookSpec(), len(p.Observed.InputHook)); err != nil {
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

// ensureHook puts the hook at position 1 of DOCKER-USER (or FORWARD).
func ensureHook(ctx context.Context, t *Tables, chain string) error {
	return ensureJump(ctx, t, chain, HookSpec(), isHook)
}

// ensureInputHook puts the jump to DOCKMOAT-INPUT at position 1 of INPUT.
func ensureInputHook(ctx context.Context, t *Tables) error {
	return ensureJump(ctx, t, rules.InputHookChain, InputHookSpec(), isInputHook)
}

// ensureJump puts a jump of dockmoat's at position 1 of a chain and
// removes any other copy, in one iptables-restore batch: every copy is
// deleted by its rule (not by a position read earlier, which a concurrent
// writer may have shifted onto someone else's rule) and one inserted
// first, atomically, so the chain is never without it. It is idempotent.
// A look-alike (the hook's comment and target, other matches) can only be
// deleted by position; that is done after, and only for such rules.
func ensureJump(ctx context.Context, t *Tables, chain string, spec []string, is func(string) bool) error {
	lines, err := t.List("filter", chain)
	if err != nil {
		return fmt.Errorf("listing %s: %w", chain, err)
	}
	pos := jumpPositions(lines, is)
	exact := jumpPositions(lines, func(l string) bool { return slices.Equal(iptsave.Tokenize(l)[2:], spec) })
	if slices.Equal(pos, []int{1}) && slices.Equal(exact, []int{1}) {
		return nil
	}
	bt := iptsave.NewBatch()
	for range exact {
		bt.Line(iptsave.Command("-D "+chain, spec))
	}
	bt.Line(iptsave.Command("-I "+chain+" 1", spec))
	if err := t.Restore(ctx, []byte(bt.Commit())); err != nil {
		return fmt.Errorf("putting dockmoat's jump at the top of %s: %w", chain, err)
	}
	if len(pos) == len(exact) {
		return nil
	}
	if lines, err = t.List("filter", chain); err != nil {
		return fmt.Errorf("listing %s: %w", chain, err)
	}
	pos = jumpPositions(lines, is)
	// Delete look-alikes from the bottom so positions above stay valid.
	for i := len(pos) - 1; i >= 1; i-- {
		if err := t.DeleteById("filter", chain, pos[i]); err != nil && !isNotExist(err) {
			return fmt.Errorf("removing a copy of dockmoat's jump at %s position %d: %w", chain, pos[i], err)
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
