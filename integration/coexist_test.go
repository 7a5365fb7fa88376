package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestCoexistence: a host that follows the ufw-docker recipe, and a
// user's own ACCEPT in DOCKER-USER. With the recipe, a port a dockmoat
// label opens stays closed (the recipe drops it after dockmoat let it
// through); audit and the daemon's log say so and what to do, and doing
// it opens the port (so the recipe was the cause). A user's ACCEPT below
// dockmoat's hook opens nothing dockmoat closes, and is reported too.
func TestCoexistence(t *testing.T) {
	needBeds(t)
	beds := pickBeds(func(eng testbed.Engine) []testbed.Engine {
		if eng.Legacy { // no ufw on the legacy bed
			return nil
		}
		return []testbed.Engine{eng}
	})
	eachBed(t, beds, coexistenceBed)
}

func coexistenceBed(t *testing.T, eng testbed.Engine) {
	e := startEnv(t, eng)
	ctx := e.ctx
	e.run(t, testbed.Spec{Name: "web", Labels: map[string]string{"dockmoat.allow": "8081"}, Publish: []string{"8081:80"}, Serve: []string{"80"}})
	e.run(t, testbed.Spec{Name: "closed", Publish: []string{"8080:80"}, Serve: []string{"80"}})
	// Controls: Docker alone publishes both to both sources.
	e.expect(t, out("tcp", A, 8081, true, "web"), out("tcp", B, 8080, true, "closed"))

	if err := e.bed.SetupUFW(ctx); err != nil {
		t.Fatal(err)
	}
	after := filepath.Join("/etc/netns", e.bed.HostNS, "ufw", "after.rules")
	orig, err := os.ReadFile(after)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(after, append(append([]byte{}, orig...), testbed.UFWDockerRecipe...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--force", "enable"}, {"allow", "22"}} {
		if out, err := e.bed.UFW(ctx, args...); err != nil {
			t.Fatalf("ufw %v: %v\n%s", args, err, out)
		}
	}
	e.startDockmoat(t, "ufw: auto\n")
	e.expect(t, out("tcp", A, 8081, false, ""))
	const recipe = "the ufw-docker after.rules recipe is installed"
	if aud := e.auditText(t); !strings.Contains(aud, recipe) {
		t.Errorf("audit does not report the recipe:\n%s", aud)
	}
	e.waitLog(t, recipe)

	// What the finding says to do: the block out of after.rules, its
	// rules out of DOCKER-USER. The label's port then answers.
	if err := os.WriteFile(after, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := e.bed.UFW(ctx, "reload"); err != nil {
		t.Fatalf("ufw reload: %v\n%s", err, out)
	}
	save, err := e.bed.IptablesSave(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range testbed.ChainRules(save, "DOCKER-USER") {
		if strings.Contains(l, "ufw-user-forward") || strings.Contains(l, "ufw-docker-logging-deny") {
			args := append([]string{e.bed.Iptables(), "-D"}, strings.Fields(strings.TrimPrefix(l, "-A "))...)
			if out, err := e.bed.HostExec(ctx, args...); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
		}
	}
	e.sync(t)
	e.expect(t, out("tcp", A, 8081, true, "web"))

	// A user's ACCEPT for B, right below dockmoat's hook and check.
	if out, err := e.bed.HostExec(ctx, e.bed.Iptables(), "-I", "DOCKER-USER", "3", "-s", B.String()+"/32", "-j", "ACCEPT"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	e.expect(t, out("tcp", B, 8080, false, ""), out("tcp", B, 8081, true, "web"))
	aud := e.auditText(t)
	if !strings.Contains(aud, `DOCKER-USER rule "-s `+B.String()+`/32 -j ACCEPT" comes after dockmoat's hook`) || strings.Contains(aud, recipe) {
		t.Errorf("audit after the fix and the ACCEPT:\n%s", aud)
	}
}

// waitLog waits until the daemon's log holds want.
func (e *env) waitLog(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if strings.Contains(e.dm.Logs(), want) {
			return
		}
	}
	t.Errorf("the daemon's log never said %q", want)
}

// auditText is audit's report with its line wrapping undone.
func (e *env) auditText(t *testing.T) string {
	t.Helper()
	aud, _ := e.bed.Exec(e.ctx, dockmoatBin, "audit")
	return strings.Join(strings.Fields(aud), " ")
}
