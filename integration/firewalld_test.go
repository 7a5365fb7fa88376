package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestFirewalld: hosts running firewalld (RHEL, Fedora, Rocky, Alma).
// Docker integrates with it (zone docker); a reload or a restart of
// firewalld must never leave a closed published port answering, and
// dockmoat never touches firewalld's state. Docker 29, firewalld 1.3.3
// with its nftables backend and with its iptables backend (whose reload
// flushes every iptables table, dockmoat's chains and Docker's with them).
func TestFirewalld(t *testing.T) {
	needBeds(t)
	if err := testbed.HaveFirewalld(); err != nil {
		t.Fatal(err)
	}
	var beds []testbed.Engine
	for _, eng := range engines {
		if eng.Name == "docker29" {
			for _, backend := range []string{"nftables", "iptables"} {
				eng.Name, eng.Firewalld = "docker29-firewalld-"+backend, backend
				beds = append(beds, eng)
			}
		}
	}
	if len(beds) != 2 {
		t.Fatalf("docker29 engine missing: %v", engines)
	}
	for _, eng := range beds {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			firewalldBed(t, eng)
		})
	}
}

func firewalldBed(t *testing.T, eng testbed.Engine) {
	e := startEnv(t, eng)
	ctx := e.ctx
	zones, err := e.bed.FirewallCmd(ctx, "--get-active-zones")
	if err != nil || !strings.Contains(zones, "docker") {
		t.Fatalf("Docker did not integrate with firewalld (%v): %s\ndockerd log:\n%s", err, zones, e.bed.DockerdLog())
	}
	e.run(t, testbed.Spec{Name: "closed", Publish: []string{"8080:80"}, Serve: []string{"80"}, Restart: "always"})
	e.run(t, testbed.Spec{Name: "web", Labels: map[string]string{"dockmoat.allow": "8081"}, Publish: []string{"8081:80"}, Serve: []string{"80"}, Restart: "always"})
	// Positive control: firewalld and Docker alone publish both.
	e.expect(t, out("tcp", A, 8080, true, "closed"), out("tcp", A, 8081, true, "web"))
	e.startDockmoat(t, "{}\n")
	e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", A, 8081, true, "web"))

	hammer := func(t *testing.T, what string, fault func() error) {
		t.Helper()
		p := e.startProber([]check{out("tcp", A, 8080, false, ""), out("tcp", B, 8081, true, "web")}, 4)
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		if err := fault(); err != nil {
			p.finish()
			t.Fatalf("%s: %v", what, err)
		}
		took := time.Since(start)
		time.Sleep(2 * time.Second)
		attempts, breaches, misses := p.finish()
		t.Logf("%s: %s; attempts %v, %d answered on the closed port; misses on the open one %v", what, took.Round(time.Millisecond), attempts, len(breaches), misses)
		if len(breaches) > 0 {
			t.Errorf("%s: the closed port answered %d times: %v", what, len(breaches), breaches)
		}
		e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", A, 8081, true, "web"))
	}
	t.Run("Reload", func(t *testing.T) {
		hammer(t, "firewall-cmd --reload", func() error {
			out, err := e.bed.FirewallCmd(ctx, "--reload")
			if err != nil {
				return err
			}
			_ = out
			return nil
		})
	})
	t.Run("Restart", func(t *testing.T) {
		hammer(t, "firewalld restart", func() error {
			if err := e.bed.StopFirewalld(); err != nil {
				return err
			}
			return e.bed.StartFirewalld(ctx)
		})
	})
}
