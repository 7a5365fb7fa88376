package integration

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestRebootGuard simulates a host reboot: dockmoat and dockerd stop, the
// netfilter tables come back empty, `dockmoat guard` runs (the systemd
// guard unit, ordered before docker.service), then dockerd starts and
// brings back its restart=always containers. While a prober hammers both
// an unlabeled and a labeled port from outside, nothing may answer until
// `dockmoat run` has reconciled, over IPv4 (the DNAT path) and IPv6 (the
// containers are IPv4-only: docker-proxy answers, over INPUT, the ports
// the guard reads from the last pass's record in the state directory);
// after it, the labeled port opens. The guard is given an invalid config
// (docker20) or a missing one (docker29): it installs its deny all the
// same.
func TestRebootGuard(t *testing.T) {
	needBeds(t)
	for i, eng := range engines {
		if eng.Legacy {
			continue
		}
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, eng)
			ctx := e.ctx
			e.run(t, testbed.Spec{Name: "db", Publish: []string{"8080:80"}, Serve: []string{"80"}, Restart: "always"})
			e.run(t, testbed.Spec{Name: "web", Labels: map[string]string{"dockmoat.allow": "8081"}, Publish: []string{"8081:80"}, Serve: []string{"80"}, Restart: "always"})
			e.startDockmoat(t, "{}\n")
			e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", A, 8081, true, "web"),
				out6("tcp", A6, 8080, false, ""), out6("tcp", A6, 8081, true, "web"))

			// "Reboot": everything stops, netfilter is empty again.
			if err := e.dm.Stop(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := e.bed.StopDockerd(); err != nil {
				t.Fatal(err)
			}
			ipt := e.bed.Iptables()
			for _, bin := range []string{ipt, "ip6tables-nft"} {
				for _, table := range []string{"filter", "nat", "raw", "mangle"} {
					for _, op := range []string{"-F", "-X"} {
						if _, err := e.bed.HostExec(ctx, bin, "-t", table, op); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			// The guard must install its deny whatever the config file:
			// invalid on one engine, missing on the other.
			guardCfg := e.dm.Config + ".missing"
			if i == 0 {
				guardCfg = e.dm.Config + ".bad"
				if err := os.WriteFile(guardCfg, []byte("trusted_sources: [203.0.113.0/24]\nufw: maybe\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := e.bed.Exec(ctx, dockmoatBin, "guard", "--config", guardCfg, "--state-dir", e.dm.StateDir()); err != nil {
				t.Fatalf("guard: %v: %s", err, out)
			} else if !containsAll(out, guardCfg, "fail-closed", "guard installed", "closed on the docker-proxy path") {
				t.Errorf("guard with config %s: output does not name the file and the deny:\n%s", guardCfg, out)
			} else {
				t.Logf("guard: %s", out)
			}
			p := e.startProber([]check{out("tcp", A, 8080, false, ""), out("tcp", B, 8081, false, ""),
				out6("tcp", A6, 8080, false, ""), out6("tcp", B6, 8081, false, "")}, 3)
			if err := e.bed.StartDockerd(ctx); err != nil {
				p.finish()
				t.Fatal(err)
			}
			// Wait until Docker has restarted both containers and published them.
			deadline := time.Now().Add(60 * time.Second)
			for {
				res, err := e.bed.Docker.ContainerList(ctx, client.ContainerListOptions{})
				list := res.Items
				if err == nil && len(list) == 2 && len(list[0].Ports) > 0 && len(list[1].Ports) > 0 {
					break
				}
				if time.Now().After(deadline) {
					p.finish()
					t.Fatalf("containers did not come back: %v %v", list, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(2 * time.Second) // let the prober work against the restarted containers
			attempts, breaches, _ := p.finish()
			t.Logf("before dockmoat run: prober attempts %v", attempts)
			noneThrough(t, attempts, breaches, "after reboot before dockmoat run")
			// Positive control: the servers are up (from the host itself).
			for _, name := range []string{"db", "web"} {
				c, err := e.bed.Inspect(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				e.serverUp(t, c, "tcp", 80)
			}
			if err := e.dm.Start(); err != nil {
				t.Fatal(err)
			}
			e.sync(t)
			e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", A, 8081, true, "web"),
				out6("tcp", A6, 8080, false, ""), out6("tcp", A6, 8081, true, "web"))
		})
	}
}
