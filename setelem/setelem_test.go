package setelem

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

func TestDiff(t *testing.T) {
	missing, extra := Diff([]string{"a", "b", "c"}, Index([]string{"b", "d"}))
	slices.Sort(missing)
	if fmt.Sprint(missing, extra) != "[a c] [d]" {
		t.Errorf("missing %v extra %v", missing, extra)
	}
	if m, x := Diff([]string{"a"}, Index([]string{"a"})); m != nil || x != nil {
		t.Errorf("equal sets: %v %v", m, x)
	}
	if m, x := Diff(nil, Index([]string{"a"})); m != nil || fmt.Sprint(x) != "[a]" {
		t.Errorf("empty want: %v %v", m, x)
	}
}

func TestStringAndCompare(t *testing.T) {
	a := Elem{Addr: netip.MustParseAddr("172.17.0.2"), Proto: "tcp", Port: 80}
	b := a
	b.Src = netip.MustParsePrefix("198.51.100.0/24")
	if a.String() != "172.17.0.2,tcp:80" || b.String() != "172.17.0.2,tcp:80,198.51.100.0/24" {
		t.Errorf("String: %s %s", a, b)
	}
	if Compare(a, b) >= 0 || Compare(b, a) <= 0 || Compare(a, a) != 0 {
		t.Errorf("Compare does not order %s before %s", a, b)
	}
}
