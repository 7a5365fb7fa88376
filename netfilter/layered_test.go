package netfilter

import (
	"context"
	"errors"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// fakeBackend records calls and returns one plan per family.
type fakeBackend struct {
	name     string
	applied  []FamilyPlan
	intact   bool
	repairs  int
	removed  bool
	applyErr error
}

func (f *fakeBackend) Plan(context.Context, config.Config, rules.Snapshot, bool) ([]FamilyPlan, error) {
	return []FamilyPlan{{Family: rules.IPv4, Tool: f.name}, {Family: rules.IPv6, Tool: f.name}}, nil
}
func (f *fakeBackend) Apply(_ context.Context, plans []FamilyPlan) (Applied, error) {
	f.applied = plans
	out := Applied{Wrote: true, Drift: []string{f.name + " drift"}}
	for _, p := range plans {
		out.Families = append(out.Families, Installed{Plan: p, Changed: true})
	}
	return out, f.applyErr
}
func (f *fakeBackend) Repair(context.Context) ([]string, error) {
	f.repairs++
	return []string{f.name + " repaired"}, nil
}
func (f *fakeBackend) Intact(context.Context) (bool, error) { return f.intact, nil }
func (f *fakeBackend) Guard(context.Context, config.Config, Boot) ([]string, error) {
	return []string{f.name + " guard"}, nil
}
func (f *fakeBackend) Uninstall(context.Context) error { f.removed = true; return nil }
func (f *fakeBackend) Notifies() bool                  { return true }

func TestLayered(t *testing.T) {
	main, layer := &fakeBackend{name: "ipt", intact: true}, &fakeBackend{name: "nft", intact: true}
	l := Layered{Main: main, Layer: layer}
	ctx := context.Background()
	plans, err := l.Plan(ctx, config.Default(), rules.Snapshot{}, false)
	if err != nil || len(plans) != 4 || plans[0].Layer || !plans[2].Layer || plans[2].Tool == "nft" {
		t.Fatalf("plans: %+v, %v", plans, err)
	}
	main.applyErr = errors.New("DOCKER-USER missing")
	out, err := l.Apply(ctx, plans)
	if err == nil || len(main.applied) != 2 || len(layer.applied) != 2 || main.applied[0].Layer || !layer.applied[0].Layer {
		t.Errorf("apply split: main %v, layer %v, err %v", main.applied, layer.applied, err)
	}
	if len(out.Families) != 2 || out.Families[0].Plan.Layer || len(out.Drift) != 2 {
		t.Errorf("applied: families are the main backend's only, drift of both: %+v", out)
	}
	if found, _ := l.Repair(ctx); len(found) != 2 || main.repairs != 1 || layer.repairs != 1 {
		t.Errorf("repair both: %v", found)
	}
	layer.intact = false
	if ok, _ := l.Intact(ctx); ok {
		t.Error("intact while the layer drifted")
	}
	if err := l.Uninstall(ctx); err != nil || !main.removed || !layer.removed {
		t.Error("uninstall both")
	}
}
