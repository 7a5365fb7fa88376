package rules_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/rules"
)

// TestDescAsTheRegexp: Desc's hand-written scan replaces exactly what the
// character class it replaced did, rune by rune and invalid byte by
// invalid byte, and cuts at 200 bytes.
func TestDescAsTheRegexp(t *testing.T) {
	unsafe := regexp.MustCompile(`[^A-Za-z0-9_.:/ ,*-]`)
	for _, s := range []string{
		"", "default deny", "egress of web-1: leaving docker network br-0123",
		`quote " and 'single' and back\slash`, "tab\tnewline\n", "ünïcödé and 日本",
		"invalid \xff\xfe bytes", "replacement \uFFFD rune", "a=b;c|d&e$f(g)",
		strings.Repeat("x", 250), strings.Repeat("é", 150),
	} {
		want := unsafe.ReplaceAllString(s, "_")
		if len(want) > 200 {
			want = want[:200]
		}
		if got := rules.Desc(s); got != want {
			t.Errorf("Desc(%q) = %q, want %q", s, got, want)
		}
	}
}
