package main

import (
	"bytes"
	"testing"

	"github.com/dockmoat/dockmoat/audit"
)

// TestAuditQuiet: audit -q prints nothing when every port is as
// intended, and the whole report when one is reachable beyond policy.
func TestAuditQuiet(t *testing.T) {
	fine := audit.Report{Rows: []audit.Row{{Container: "db", HostPort: 5432, Proto: "tcp", Reason: "no allow"}}}
	bad := audit.Report{Rows: []audit.Row{{Container: "db", HostPort: 5432, Proto: "tcp", Reason: "no allow", Beyond: true}}}
	for _, c := range []struct {
		name       string
		rep        audit.Report
		quiet      bool
		wantBeyond bool
		wantOutput bool
	}{
		{"fine", fine, false, false, true},
		{"fine quiet", fine, true, false, false},
		{"beyond quiet", bad, true, true, true},
	} {
		var out bytes.Buffer
		beyond, err := report(&out, options{format: "table", quiet: c.quiet}, c.rep)
		if err != nil || beyond != c.wantBeyond || (out.Len() > 0) != c.wantOutput {
			t.Errorf("%s: beyond %v, %d bytes, %v", c.name, beyond, out.Len(), err)
		}
	}
}
