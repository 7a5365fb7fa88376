package ipt

import (
	"context"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptfake"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// A rig drives the backend as the reconcile loop does (Plan, then Apply)
// on fake tables and sets, with a policy the test changes between passes.

const foreign = `-s 192.0.2.99/32 -m comment --comment "admin rule" -j DROP`

type rig struct {
	v4, v6 *iptfake.Table
	b      *Backend
	cfg    config.Config
	snap   rules.Snapshot
}

// passResult is what a pass tells, as the loop reads it from a backend.
type passResult struct {
	Applied, HookFix bool
	Drift            []string
	Problems         []rules.Problem
}

// newRig: Docker publishing web on IPv4 (DOCKER-USER holds an admin's
// rule), not managing IPv6.
func newRig(t *testing.T, cfg config.Config) *rig {
	t.Helper()
	return newRigSets(t, cfg, nil)
}

// newRigSets is newRig with the backend on ipsets (sets may be nil).
func newRigSets(t *testing.T, cfg config.Config, sets SetStore) *rig {
	t.Helper()
	v4 := iptfake.New("DOCKER", "DOCKER-USER")
	v4.Append("FORWARD", "-j DOCKER-USER")
	v4.Append("DOCKER-USER", foreign)
	v4.Append("DOCKER-USER", "-j RETURN")
	v6 := iptfake.New() // Docker not managing IPv6
	log, _ := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	var s SetStore
	if sets != nil {
		s = sets
	}
	// With their generations, as on iptables-nft: a pass lists a table
	// only after it changed, so every drift test also proves that a
	// change by someone else is seen.
	b := New(&Tables{IPTables: v4, Restorer: v4, Tool: "fake", Generation: v4.Generation},
		&Tables{IPTables: v6, Restorer: v6, Tool: "fake6", Generation: v6.Generation}, s, log)
	return &rig{v4: v4, v6: v6, b: b, cfg: cfg, snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2")}}}
}

// bareRig is a rig on one IPv4 table as given, no IPv6, no sets.
func bareRig(v4 *iptfake.Table) *rig {
	log, _ := test.NewNullLogger()
	return &rig{v4: v4, b: New(&Tables{IPTables: v4, Restorer: v4, Tool: "fake"}, nil, nil, log), cfg: config.Default(),
		snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2")}}}
}

// setRig is newRig on fake ipsets that note when each set was created.
func setRig(t *testing.T) (*rig, *iptfake.Sets) {
	fs := iptfake.NewSets()
	r := newRigSets(t, config.Default(), fs)
	fs.RestoresAt = func() int { return r.v4.Restores }
	return r, fs
}

func (r *rig) set(s rules.Snapshot) { r.snap = s }

// try is one pass: Plan, then Apply.
func (r *rig) try() (passResult, error) {
	ctx := context.Background()
	plans, err := r.b.Plan(ctx, r.cfg, r.snap, false)
	if err != nil {
		return passResult{}, err
	}
	var res passResult
	for _, p := range plans {
		res.Problems = append(res.Problems, p.Problems()...)
	}
	a, err := r.b.Apply(ctx, plans)
	res.Applied, res.HookFix, res.Drift = a.Wrote, a.HookFix, a.Drift
	return res, err
}

func (r *rig) sync(t *testing.T) passResult {
	t.Helper()
	res, err := r.try()
	if err != nil {
		t.Fatalf("pass: %v", err)
	}
	return res
}

func (r *rig) inSync(t *testing.T) {
	t.Helper()
	plans, err := r.b.Plan(context.Background(), r.cfg, r.snap, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if !p.InSync() {
			t.Fatalf("%s not in sync after a pass:\n%s", p.Family, netfilter.FormatPlan(p))
		}
	}
}
