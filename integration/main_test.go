// Package integration proves dockmoat against a real kernel and real Docker
// engines: each engine runs in a test bed (package testbed) and a client in
// the "outside" namespace tries to connect. The tests need root; without it,
// or without the engines, they skip with the reason, unless
// DOCKMOAT_REQUIRE_INTEGRATION=1 (set by .ci/run), where they fail instead.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

var (
	dockmoatBin string
	engines     []testbed.Engine
	skipReason  string
)

func required() bool { return os.Getenv("DOCKMOAT_REQUIRE_INTEGRATION") == "1" }

func TestMain(m *testing.M) {
	os.Exit(setup(m))
}

func setup(m *testing.M) int {
	var missing []string
	switch {
	case os.Geteuid() != 0:
		skipReason = "integration tests need root (network namespaces, dockerd, iptables)"
	default:
		for _, tool := range []string{"ip", "nsenter", "iptables-nft", "iptables-legacy", "ufw"} {
			if _, err := exec.LookPath(tool); err != nil {
				missing = append(missing, tool)
			}
		}
		var engMissing []string
		engines, engMissing = testbed.Engines()
		missing = append(missing, engMissing...)
		if len(missing) > 0 {
			skipReason = fmt.Sprintf("missing %v (run `make deps engines`)", missing)
		}
	}
	if skipReason != "" && required() {
		fmt.Fprintln(os.Stderr, "FAIL: DOCKMOAT_REQUIRE_INTEGRATION=1 but integration tests cannot run:", skipReason)
		return 1
	}
	if skipReason == "" {
		dir, err := os.MkdirTemp("", "dockmoat-it")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		defer testbed.RemoveBuilt()
		if dockmoatBin, err = testbed.BuildDockmoat(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code := m.Run()
	writeResults()
	return code
}

// needTools skips t when a tool it runs is not installed, or fails it
// where integration tests must run (DOCKMOAT_REQUIRE_INTEGRATION=1).
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if required() {
				t.Fatalf("%s missing (make deps installs it)", tool)
			}
			t.Skipf("%s missing", tool)
		}
	}
}

func needBeds(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}
