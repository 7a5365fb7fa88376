package netfilter

import (
	"slices"
	"testing"
)

type chain struct {
	name   string
	hashes []string
}

func (c chain) ChainName() string { return c.name }
func (c chain) Hashes() []string  { return c.hashes }

func TestChainComparisons(t *testing.T) {
	want := []chain{{"A", []string{"1", "2"}}, {"B", []string{"3"}}, {"C", nil}}
	found := map[string][]string{"A": {"2", "1"}, "C": {}, "X": {"9"}}
	if got := ChangedChains(want, found); !slices.Equal(got, []string{"A", "B"}) {
		t.Errorf("ChangedChains = %v; want A (reordered) and B (missing), C held as is", got)
	}
	last := HashesOf(want)
	if len(last) != 3 || !slices.Equal(last["A"], []string{"1", "2"}) {
		t.Fatalf("HashesOf = %v", last)
	}
	if Intact(found, last) {
		t.Error("reordered and missing chains are not intact")
	}
	got := ChainDrift("IPv4: ", map[string][]string{"A": {"2", "1"}, "C": {}}, last)
	if !slices.Equal(got, []string{"IPv4: rule order changed in A", "IPv4: chain B deleted"}) {
		t.Errorf("ChainDrift = %q", got)
	}
	if !Intact(map[string][]string{"A": {"1", "2"}, "B": {"3"}, "C": {}}, last) {
		t.Error("the same hashes are intact")
	}
}
