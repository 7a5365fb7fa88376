package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestNFTBackend runs the core behaviours on Docker 29 with
// --firewall-backend=nftables, where there is no DOCKER-USER and dockmoat
// owns the table inet dockmoat, and repairs its table after it is flushed,
// deleted, or dockerd restarts.
func TestNFTBackend(t *testing.T) {
	t.Parallel() // beside the bed suites, not before them
	needBeds(t)
	beds := pickBeds(func(eng testbed.Engine) []testbed.Engine {
		if eng.NFTables() && !eng.Legacy {
			return []testbed.Engine{eng.WithNFTables()}
		}
		return nil
	})
	requireBed(t, beds, "on Docker's nftables backend", nftBed)
	eng := beds[0]
	e := startEnv(t, eng)
	ctx := e.ctx
	nftTable := func() string {
		out, _ := e.bed.HostExec(ctx, "nft", "list", "table", "inet", "dockmoat")
		return out
	}
	if _, err := e.bed.CreateNetwork(ctx, "dmnet", "172.29.200.0/24"); err != nil {
		t.Fatal(err)
	}
	plain := e.run(t, testbed.Spec{Name: "plain", Publish: []string{"8080:80", "8053:53/udp"}, Serve: []string{"80", "53/udp"}, Restart: "always"})
	// Positive controls: Docker alone publishes it, over IPv4 (DNAT) and to
	// IPv6 clients (docker-proxy on the host: the container is IPv4-only).
	e.expect(t, out("tcp", A, 8080, true, "plain"), out6("tcp", A6, 8080, true, "plain"), out6("udp", A6, 8053, true, "plain"))
	e.startDockmoat(t, "{}\n")
	if !strings.Contains(e.dm.Logs(), "firewall backend nftables") {
		t.Errorf("backend not detected:\n%s", e.dm.Logs())
	}
	e.run(t, testbed.Spec{Name: "web", Labels: map[string]string{"dockmoat.allow": "8081"}, Publish: []string{"8081:80", "8082:81"}, Serve: []string{"80", "81"}, Restart: "always"})
	e.run(t, testbed.Spec{Name: "restricted", Labels: map[string]string{"dockmoat.allow": "9300", "dockmoat.from": "203.0.113.10"}, Publish: []string{"9300:80"}, Serve: []string{"80"}})
	e.run(t, testbed.Spec{Name: "ranged", Labels: map[string]string{"dockmoat.allow": "9100-9101, 9153/udp"}, Publish: []string{"9100-9102:9100-9102", "9153:53/udp"}, Serve: []string{"9100/tcp", "9101/tcp", "9102/tcp", "53/udp"}})
	e.sync(t)

	t.Run("ClosedByDefaultAllowSourcesRangesUDP", func(t *testing.T) {
		e.serverUp(t, plain, "tcp", 80)
		e.expect(t,
			out("tcp", A, 8080, false, ""), out("udp", B, 8053, false, ""), out("tcp", Priv, 8080, false, ""),
			out("tcp", A, 8081, true, "web"), out("tcp", A, 8082, false, ""),
			out("tcp", A, 9300, true, "restricted"), out("tcp", B, 9300, false, ""),
			out("tcp", B, 9100, true, "ranged"), out("tcp", B, 9101, true, "ranged"), out("tcp", B, 9102, false, ""),
			out("udp", A, 9153, true, "ranged"),
			e.fromHost("tcp", testbed.HostIP, 8080, true, "plain"))
	})

	// The docker-proxy path on this backend: the input base chain of
	// table inet dockmoat, with the same allows per family.
	t.Run("IPv6ClientsViaDockerProxy", func(t *testing.T) {
		e.expect(t,
			out6("tcp", A6, 8080, false, ""), out6("udp", A6, 8053, false, ""), out6("tcp", B6, 8080, false, ""),
			out6("tcp", A6, 8081, true, "web"), out6("tcp", A6, 8082, false, ""),
			out6("tcp", A6, 9300, false, ""), out6("tcp", B6, 9300, false, ""), // restricted to an IPv4 source
			out6("udp", B6, 9153, true, "ranged"))
		if !strings.Contains(nftTable(), "hook input") {
			t.Errorf("no input chain in table inet dockmoat:\n%s", nftTable())
		}
	})

	t.Run("RecreatedContainerKeepsPolicyOldIPOpensNothing", func(t *testing.T) {
		mover := e.run(t, testbed.Spec{Name: "mover", Network: "dmnet", IP: "172.29.200.10", Labels: map[string]string{"dockmoat.allow": "9500"}, Publish: []string{"9500:80"}, Serve: []string{"80"}})
		e.sync(t)
		if err := e.bed.Remove(ctx, mover.ID); err != nil {
			t.Fatal(err)
		}
		e.run(t, testbed.Spec{Name: "squatter", Network: "dmnet", IP: "172.29.200.10", Publish: []string{"9501:80"}, Serve: []string{"80"}})
		e.run(t, testbed.Spec{Name: "mover", Network: "dmnet", IP: "172.29.200.11", Labels: map[string]string{"dockmoat.allow": "9500"}, Publish: []string{"9500:80"}, Serve: []string{"80"}})
		e.sync(t)
		e.expect(t, out("tcp", A, 9500, true, "mover"), out("tcp", A, 9501, false, ""))
		if strings.Contains(nftTable(), "172.29.200.10 ") {
			t.Errorf("an allow still names the old address:\n%s", nftTable())
		}
	})

	// Audit evaluates the whole nftables ruleset (Docker's tables and
	// dockmoat's) and every verdict is tried with real connections, over
	// IPv4 and IPv6; again below once dockmoat is uninstalled.
	t.Run("AuditAgreesWithConnections", func(t *testing.T) {
		e.sync(t) // the last subtest's removals, on a busy machine
		rep, code := nftAudit(t, e)
		if code != 0 || !rep.Protected {
			t.Errorf("exit %d protected %v; want 0 and true; findings %v", code, rep.Protected, rep.Findings)
		}
		for _, w := range []struct {
			name string
			port uint16
			exp  report.Exposure
		}{{"plain", 8080, report.Closed}, {"web", 8081, report.Public}, {"web", 8082, report.Closed}, {"restricted", 9300, report.Restricted}, {"ranged", 9102, report.Closed}} {
			if r := nftRow(t, rep, w.name, w.port, "tcp", false); r.Exposure != w.exp || !r.Intended {
				t.Errorf("%s %d: %+v, want %s and intended", w.name, w.port, r, w.exp)
			}
		}
		agreeNFT(t, e, rep)
		// --explain for a closed, an open and a restricted port: the
		// accepted packet goes through dockmoat's table, then Docker's.
		cfg := e.dm.Config
		explainPaths(t, e, cfg, "8080/tcp", map[string]string{"anyone": "drop"}, map[string]string{"anyone": "inet dockmoat/"})
		explainPaths(t, e, cfg, "8081/tcp", map[string]string{"anyone": "accept"}, map[string]string{"anyone": "ip docker-bridges/"})
		explainPaths(t, e, cfg, "9300/tcp", map[string]string{"anyone": "drop", "203.0.113.10/32": "accept"}, map[string]string{"203.0.113.10/32": "ip docker-bridges/"})
	})

	drift := func(t *testing.T, what string, fault ...string) {
		t.Helper()
		before := nftTable()
		start := time.Now()
		if out, err := e.bed.HostExec(ctx, fault...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for nftTable() != before {
			if time.Since(start) > 15*time.Second {
				t.Fatalf("%s: table not repaired in 15 s:\n%s", what, nftTable())
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(start)
		if took > time.Second {
			overGoal(t, what+": the repair", took)
		}
		record(result{eng.Name, "nft: " + what, took, 0, 0, "time until nft list table equals the table before the fault"})
		e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", A, 8081, true, "web"))
	}
	t.Run("DriftFlushTable", func(t *testing.T) {
		drift(t, "nft flush table inet dockmoat", "nft", "flush", "table", "inet", "dockmoat")
	})
	t.Run("DriftDeleteTable", func(t *testing.T) {
		drift(t, "nft delete table inet dockmoat", "nft", "delete", "table", "inet", "dockmoat")
	})

	t.Run("FlushEachClosed", func(t *testing.T) { nftFlushEachClosed(t, e) })

	t.Run("NatFlushedProxyClosed", func(t *testing.T) { nftNatFlushed(t, e) })

	t.Run("DockerdRestart", func(t *testing.T) {
		_, _, breaches := e.restartDockerd(t, []check{out("tcp", A, 8080, false, ""), out("udp", B, 8053, false, "")}, time.Second)
		for _, b := range breaches {
			t.Errorf("unauthorized during dockerd restart: %s", b)
		}
		e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", A, 8081, true, "web"))
	})

	t.Run("DisableEnable", func(t *testing.T) { disableEnable(t, e, 9970, false) })
	t.Run("BannedEverywhere", func(t *testing.T) { bannedEverywhere(t, e, true, 9740) })
	t.Run("RateLimitRefusesBurst", func(t *testing.T) { rateLimited(t, e, 9760, false, "") })
	t.Run("IfaceSourceVPNOnly", func(t *testing.T) { ifaceSourced(t, e, 9765, false, "") })

	t.Run("StoppedStaysClosedUninstallClean", func(t *testing.T) {
		if err := e.dm.Stop(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", A, 8081, true, "web"), out6("tcp", A6, 8080, false, ""))
		// Audit while stopped (the rules stay), then with dockmoat's
		// ingress chain flushed by hand (the check table then closes):
		// every verdict tried for real.
		rep, code := nftAudit(t, e)
		if r := nftRow(t, rep, "plain", 8080, "tcp", false); code != 0 || r.Exposure != report.Closed {
			t.Errorf("audit, dockmoat stopped: exit %d, plain %+v", code, r)
		}
		agreeNFT(t, e, rep)
		if out, err := e.bed.HostExec(ctx, "nft", "flush", "chain", "inet", "dockmoat", "ingress"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		rep, code = nftAudit(t, e)
		if r := nftRow(t, rep, "plain", 8080, "tcp", false); code != 0 || rep.Protected || r.Exposure != report.Closed || r.Beyond || !strings.Contains(r.Reason, "dockmoat_check") {
			t.Errorf("audit, ingress flushed: exit %d protected %v, plain %+v", code, rep.Protected, r)
		}
		agreeNFT(t, e, rep)
		if out, err := e.bed.Exec(ctx, dockmoatBin, "uninstall"); err != nil {
			t.Fatalf("uninstall: %v %s", err, out)
		}
		if all, _ := e.bed.HostExec(ctx, "nft", "list", "ruleset"); strings.Contains(all, "dockmoat") || !strings.Contains(all, "docker-bridges") {
			t.Errorf("after uninstall: dockmoat left, or Docker's tables touched:\n%s", all)
		}
		e.expect(t, out("tcp", A, 8080, true, "plain"), out6("tcp", A6, 8080, true, "plain"))
		rep, code = nftAudit(t, e)
		if r := nftRow(t, rep, "plain", 8080, "tcp", false); code != 1 || r.Exposure != report.Public || !r.Beyond {
			t.Errorf("audit without dockmoat: exit %d, plain %+v", code, r)
		}
		agreeNFT(t, e, rep)
		// Without dockmoat, --explain names the way back.
		explainPaths(t, e, e.dm.Config, "8080/tcp", map[string]string{"anyone": "accept"}, map[string]string{"anyone": "ip docker-bridges/"})
	})

	// The image as deploy/compose.yaml runs it, on this backend: it finds
	// Docker's nftables backend (nft with JSON is in the image) and closes
	// what the host binary closed; uninstall from the image leaves Docker's
	// tables. The control is the open port just above.
	t.Run("SidecarImage", func(t *testing.T) {
		sidecarImage(t, e)
		cfg, err := e.bed.WriteConfig("{}\n")
		if err != nil {
			t.Fatal(err)
		}
		side := runSidecar(t, e, "dockmoat", true, "run", "--config", "/etc/dockmoat/dockmoat.yaml")
		waitPlan(t, e, cfg)
		e.expect(t, out("tcp", A, 8080, false, ""), out("tcp", A, 8081, true, "web"), out6("tcp", A6, 8080, false, ""), out6("tcp", A6, 8081, true, "web"))
		if logs := e.containerLogs(side); !strings.Contains(logs, "firewall backend nftables") {
			t.Errorf("sidecar log lacks the backend:\n%s", logs)
		}
		timeout := 10
		if _, err := e.bed.Docker.ContainerStop(ctx, side, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
			t.Fatal(err)
		}
		e.expect(t, out("tcp", A, 8080, false, ""))
		un := runSidecar(t, e, "dockmoat-uninstall", false, "uninstall")
		if code, logs, err := e.bed.WaitExit(ctx, un, 30*time.Second); err != nil || code != 0 {
			t.Fatalf("uninstall: exit %d %v\n%s", code, err, logs)
		}
		if all, _ := e.bed.HostExec(ctx, "nft", "list", "ruleset"); strings.Contains(all, "dockmoat") || !strings.Contains(all, "docker-bridges") {
			t.Errorf("after uninstall from the image: dockmoat left, or Docker's tables touched:\n%s", all)
		}
		e.expect(t, out("tcp", A, 8080, true, "plain"))
		_ = e.bed.Remove(context.Background(), un)
		_ = e.bed.Remove(context.Background(), side)
	})
}

// nftAudit runs the audit (auditJSON); with DOCKMOAT_NFT_CAPTURE set it
// also saves `nft -j list ruleset` there, for audit/testdata.
func nftAudit(t *testing.T, e *env) (report.Report, int) {
	t.Helper()
	rep, code := auditJSON(t, e, e.dm.Config)
	if dir := os.Getenv("DOCKMOAT_NFT_CAPTURE"); dir != "" {
		live, _ := e.bed.HostExec(e.ctx, "nft", "-j", "list", "ruleset")
		_ = os.WriteFile(filepath.Join(dir, t.Name()[strings.LastIndex(t.Name(), "/")+1:]+".json"), []byte(live), 0o644)
	}
	return rep, code
}

func nftRow(t *testing.T, rep report.Report, name string, port uint16, proto string, v6 bool) report.Row {
	t.Helper()
	for _, r := range rep.Rows {
		if r.Container == name && r.HostPort == port && r.Proto == proto && strings.Contains(r.HostIP, ":") == v6 {
			return r
		}
	}
	t.Fatalf("no row for %s %d/%s (v6 %v) in %+v", name, port, proto, v6, rep.Rows)
	return report.Row{}
}

// agreeNFT tries every row's verdict with real connections from A and B
// (or A6 and B6 for an IPv6 row); an unknown verdict is a failure.
func agreeNFT(t *testing.T, e *env, rep report.Report) {
	t.Helper()
	var checks []check
	for _, r := range rep.Rows {
		if r.Exposure == report.Unknowable {
			t.Errorf("audit could not evaluate %s %s:%d/%s: %s", r.Container, r.HostIP, r.HostPort, r.Proto, r.Reason)
			continue
		}
		if r.Exposure == report.Local {
			continue
		}
		checks = append(checks, portChecks(r)...)
	}
	if len(checks) < 16 {
		t.Fatalf("only %d checks: rows missing? %+v", len(checks), rep.Rows)
	}
	e.expect(t, checks...)
}

// nftFlushEachClosed: the nftables layout fails closed. With dockmoat
// stopped (SIGSTOP: no repair), each chain of table inet dockmoat and of
// its check table is flushed in turn, then a set, then each table
// deleted: the closed port stays closed over IPv4 (DNAT) and IPv6
// (docker-proxy), TCP and UDP. The control first: both tables deleted,
// the closed port answers. After each fault dockmoat resumes and repairs.
func nftFlushEachClosed(t *testing.T, e *env) {
	ctx := e.ctx
	tables := func() string {
		a, _ := e.bed.HostExec(ctx, "nft", "list", "table", "inet", "dockmoat")
		b, _ := e.bed.HostExec(ctx, "nft", "list", "table", "inet", "dockmoat_check")
		return a + b
	}
	before := tables()
	var chains [][]string
	for _, table := range []string{"dockmoat", "dockmoat_check"} {
		out, err := e.bed.HostExec(ctx, "nft", "list", "table", "inet", table)
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*chain (\S+) \{`).FindAllStringSubmatch(out, -1) {
			chains = append(chains, []string{"nft", "flush", "chain", "inet", table, m[1]})
		}
	}
	if len(chains) < 6 {
		t.Fatalf("chains: %v", chains)
	}
	closed := []check{out("tcp", A, 8080, false, ""), out("udp", B, 8053, false, ""), out6("tcp", A6, 8080, false, "")}
	fault := func(name string, open []check, cmds ...[]string) {
		t.Helper()
		if err := e.dm.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for _, c := range cmds {
			if msg, err := e.bed.HostExec(ctx, c...); err != nil {
				t.Fatalf("%s: %v: %s", name, err, msg)
			}
		}
		checks := closed
		if open != nil {
			checks = open
		}
		e.expect(t, checks...)
		if err := e.dm.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		for start := time.Now(); tables() != before; time.Sleep(5 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: not repaired:\n%s", name, tables())
			}
		}
		e.expect(t, out("tcp", A, 8081, true, "web"))
		t.Logf("%s: %d probes as expected while dockmoat was stopped, then repaired", name, len(checks))
	}
	fault("control: both tables deleted", []check{out("tcp", A, 8080, true, "plain")},
		[]string{"nft", "delete", "table", "inet", "dockmoat"}, []string{"nft", "delete", "table", "inet", "dockmoat_check"})
	for _, c := range chains {
		fault(strings.Join(c[1:], " "), nil, c)
	}
	fault("flush set open4", nil, []string{"nft", "flush", "set", "inet", "dockmoat", "open4"})
	fault("delete table inet dockmoat", nil, []string{"nft", "delete", "table", "inet", "dockmoat"})
	fault("delete table inet dockmoat_check", nil, []string{"nft", "delete", "table", "inet", "dockmoat_check"})
}

// nftNatFlushed: Docker's DNAT rules flushed (`nft flush chain ip
// docker-bridges nat-prerouting-and-output`) leave docker-proxy answering
// every published port over the input hook. While a prober hammers the
// closed ports nothing may answer; the allowed port answers through
// docker-proxy (the positive control). Docker's rules are loaded back
// from their listing afterwards.
func nftNatFlushed(t *testing.T, e *env) {
	ctx := e.ctx
	chain := []string{"ip", "docker-bridges", "nat-prerouting-and-output"}
	saved, err := e.bed.HostExec(ctx, append([]string{"nft", "list", "chain"}, chain...)...)
	if err != nil || !strings.Contains(saved, "dnat") {
		t.Fatalf("Docker's DNAT chain: %v\n%s", err, saved)
	}
	file := filepath.Join(t.TempDir(), "dnat.nft")
	if err := os.WriteFile(file, []byte(saved), 0o644); err != nil {
		t.Fatal(err)
	}
	probes := []check{out("tcp", A, 8080, false, ""), out("udp", B, 8053, false, ""), out("tcp", Priv, 8080, false, "")}
	p := e.startProber(probes, 2)
	time.Sleep(200 * time.Millisecond)
	if out, err := e.bed.HostExec(ctx, append([]string{"nft", "flush", "chain"}, chain...)...); err != nil {
		p.finish()
		t.Fatalf("%v: %s", err, out)
	}
	defer func() {
		if out, err := e.bed.HostExec(ctx, "nft", "-f", file); err != nil {
			t.Errorf("loading Docker's DNAT rules back: %v: %s", err, out)
		}
		e.expect(t, out("tcp", B, 8081, true, "web"), out("tcp", A, 8080, false, ""))
	}()
	e.expect(t, out("tcp", B, 8081, true, "web"))
	time.Sleep(2 * time.Second)
	attempts, breaches, _ := p.finish()
	if now, _ := e.bed.HostExec(ctx, append([]string{"nft", "list", "chain"}, chain...)...); strings.Contains(now, "dnat") {
		t.Fatalf("Docker's DNAT came back by itself: the test proves nothing\n%s", now)
	}
	noneThrough(t, attempts, breaches, "through docker-proxy with Docker's DNAT gone")
	t.Logf("DNAT chain flushed: %d attempts on closed ports, %d through; the allowed port answered via docker-proxy", sum(attempts), len(breaches))
}
