package nft

import "github.com/dockmoat/dockmoat/rules/rulestest"

// The shared inputs (rules/rulestest).
var (
	proxySnap   = rulestest.ProxySnap
	goldenInput = rulestest.GoldenInput
)
