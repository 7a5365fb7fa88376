package integration

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestUnenforcedReported: what dockmoat cannot filter is reported, not
// shown as closed. A container on a macvlan network on the host's outside
// link answers the outside directly while dockmoat runs (so the report is
// true), and plan and audit say so; a deny container that uses another
// container's network (network_mode container:) reaches the outside, and
// plan says its egress is not enforced. Docker 20.10 and 29.
func TestUnenforcedReported(t *testing.T) {
	needBeds(t)
	beds := pickBeds(func(eng testbed.Engine) []testbed.Engine {
		if eng.Legacy {
			return nil
		}
		return []testbed.Engine{eng}
	})
	eachBed(t, beds, unenforcedBed)
}

func unenforcedBed(t *testing.T, eng testbed.Engine) {
	e := startEnv(t, eng)
	if _, err := e.bed.CreateMacvlan(e.ctx, "lan", "203.0.113.0/24", e.bed.OutsideLink()); err != nil {
		t.Fatal(err)
	}
	stop, err := e.bed.ServeIn(e.bed.OutNSPath(), "world", "7000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	e.startDockmoat(t, "{}\n")
	e.run(t, testbed.Spec{Name: "cam", Network: "lan", IP: "203.0.113.50", Serve: []string{"80"}})
	host := e.run(t, testbed.Spec{Name: "holder", Serve: []string{"81"}})
	side := e.run(t, testbed.Spec{Name: "side", Network: "container:" + host.ID, Labels: map[string]string{"dockmoat.egress": "deny"},
		Cmd: []string{"probe", "wait=4s", "tcp:" + netip.AddrPortFrom(A, 7000).String()}})
	e.sync(t)
	// side probes after 4 s: plan and audit see it running.
	plan, _ := e.bed.Exec(e.ctx, dockmoatBin, "plan")
	aud, _ := e.bed.Exec(e.ctx, dockmoatBin, "audit")
	planJSON, _ := e.bed.Exec(e.ctx, dockmoatBin, "plan", "--format", "json", "--log-level", "error")
	if st, err := e.bed.Exec(e.ctx, dockmoatBin, "status", "--state-dir", e.dm.StateDir()); err != nil || !strings.Contains(st, "PROTECTING") {
		t.Errorf("status of the running daemon: %v\n%s", err, st)
	}
	e.expect(t, check{proto: "tcp", src: A, dst: netip.MustParseAddrPort("203.0.113.50:80"), open: true, who: "cam"})
	code, logs, err := e.bed.WaitExit(e.ctx, side.ID, 30*time.Second)
	if err != nil || code != 0 || !strings.Contains(logs, " ok ") {
		t.Errorf("side: the outside should answer (egress not enforced there): exit %d, %v: %s", code, err, logs)
	}
	for what, out := range map[string]string{"plan": plan, "audit": aud} {
		if !strings.Contains(out, "container cam on macvlan network lan: on the LAN's own link") {
			t.Errorf("%s does not report cam as unfiltered:\n%s", what, out)
		}
	}
	var doc struct {
		InSync   bool `json:"in_sync"`
		Families []struct {
			Family   string   `json:"family"`
			Problems []string `json:"problems"`
		} `json:"families"`
	}
	if err := json.Unmarshal([]byte(planJSON), &doc); err != nil || len(doc.Families) == 0 || !doc.InSync ||
		!strings.Contains(strings.Join(doc.Families[0].Problems, "\n"), "container cam on macvlan network lan") {
		t.Errorf("plan --format json: %v: %+v\n%s", err, doc, planJSON)
	}
	if !strings.Contains(plan, "container side: label dockmoat.egress=\"deny\": egress is NOT enforced: the container uses the network of container "+host.ID[:12]) {
		t.Errorf("plan does not report side's egress as unenforced:\n%s", plan)
	}
}
