package rules_test

import "github.com/dockmoat/dockmoat/rules/rulestest"

// The shared inputs (rules/rulestest).
var (
	addr = rulestest.Addr
	ctr  = rulestest.Ctr
)
