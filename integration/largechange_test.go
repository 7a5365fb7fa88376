package integration

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/dockerwatch"
	"github.com/dockmoat/dockmoat/integration/testbed"
	"github.com/dockmoat/dockmoat/netfilter/ipset"
	"github.com/dockmoat/dockmoat/netfilter/ipt"
	"github.com/dockmoat/dockmoat/reconciler"
	"github.com/dockmoat/dockmoat/rules"
)

// plusSynthetic is the bed's real Docker state plus n synthetic containers
// with one allowed published port each (addresses nothing answers on), so
// one pass can add or remove thousands of allows around real containers.
type plusSynthetic struct {
	real *dockerwatch.Watcher
	n    int
}

func (s *plusSynthetic) Snapshot(ctx context.Context) (rules.Snapshot, error) {
	snap, err := s.real.Snapshot(ctx)
	if err != nil {
		return snap, err
	}
	for i := 0; i < s.n; i++ {
		snap.Containers = append(snap.Containers, rules.Container{ID: fmt.Sprintf("syn%d", i), Name: fmt.Sprintf("syn%05d", i),
			Labels:    map[string]string{"dockmoat.allow": "*"},
			Ports:     []rules.PortBinding{{HostPort: uint16(20000 + i), ContainerPort: 80, Proto: "tcp"}},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.AddrFrom4([4]byte{10, 250, byte(i >> 8), byte(i)})}}})
	}
	return snap, nil
}

// TestLargeChangeNoExposure: a prober hammers an unlabeled published port
// (and an allowed one) while the reconciler adds and removes 2,000
// allowed ports in single passes and switches between ipsets and one
// rule per port. The unlabeled port never answers and the allowed one is
// never cut: every change is atomic (sets filled before the rules that
// use them, chains replaced in one iptables-restore batch).
func TestLargeChangeNoExposure(t *testing.T) {
	needBeds(t)
	onVariants(t, func(t *testing.T, eng testbed.Engine, e *env) {
		closed := e.run(t, testbed.Spec{Name: "closed", Publish: []string{"9100:80"}, Serve: []string{"80"}})
		open := e.run(t, testbed.Spec{Name: "open", Publish: []string{"9101:80"}, Serve: []string{"80"}, Labels: map[string]string{"dockmoat.allow": "9101"}})
		e.serverUp(t, closed, "tcp", 80)
		e.serverUp(t, open, "tcp", 80)

		cli, err := client.New(client.WithHost("unix://" + e.bed.Socket))
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		src := &plusSynthetic{real: &dockerwatch.Watcher{API: dockerwatch.Client{Client: cli}}}
		log := logrus.New()
		log.SetOutput(testWriter{t})
		log.SetLevel(logrus.WarnLevel)
		variant := ipt.VariantNFT
		if eng.Legacy {
			variant = ipt.VariantLegacy
		}
		var rec *reconciler.Reconciler
		var sets *ipset.Netlink
		in := func(f func() error) {
			t.Helper()
			if err := testbed.InNetns(e.bed.HostNSPath(), f); err != nil {
				t.Fatal(err)
			}
		}
		in(func() error {
			tables, err := ipt.NewTables(variant, 4)
			if err != nil {
				return err
			}
			if sets, err = ipset.New(); err != nil {
				return err
			}
			rec = reconciler.New(ipt.New(tables, nil, sets, log), src, config.Default(), log)
			_, err = rec.Sync(context.Background())
			return err
		})
		e.expect(t, out("tcp", testbed.OutsideA, 9100, false, ""), out("tcp", testbed.OutsideA, 9101, true, "open"))

		checks := []check{out("tcp", testbed.OutsideA, 9100, false, ""), out("tcp", testbed.OutsideB, 9100, false, ""),
			out("tcp", testbed.OutsideA, 9101, true, "open")}
		// A dropped attempt costs its 300 ms timeout: many workers keep the
		// closed port probed densely while the passes run.
		p := e.startProber(checks, 12)
		pass := func(what string) {
			t.Helper()
			in(func() error {
				start := time.Now()
				res, err := rec.Sync(context.Background())
				t.Logf("%s: %v (applied %v)", what, time.Since(start).Round(time.Millisecond), res.Applied)
				return err
			})
		}
		for round := 0; round < 4; round++ {
			src.n = 2000
			pass("add 2,000 allowed ports (ipsets)")
			rec.SetConfig(config.Config{UFW: config.UFWAuto, NoIPSet: true})
			pass("switch to one rule per port with 2,000 ports")
			src.n = 0
			pass("remove 2,000 rules")
			src.n = 2000
			pass("add 2,000 rules")
			rec.SetConfig(config.Default())
			pass("switch back to ipsets")
			src.n = 0
			pass("remove 2,000 allowed ports (ipsets)")
		}
		time.Sleep(300 * time.Millisecond)
		attempts, breaches, misses := p.finish()
		t.Logf("prober: %d attempts, %v", sum(attempts), attempts)
		for _, b := range breaches {
			t.Errorf("unlabeled port reachable during a large change: %s", b)
		}
		if sum(misses) > 0 {
			t.Errorf("allowed port 9101 failed %d times during the changes: %v", sum(misses), misses)
		}
		if attempts["tcp "+testbed.OutsideA.String()+" -> "+netip.AddrPortFrom(testbed.HostIP, 9100).String()] < 50 {
			t.Errorf("prober made too few attempts to mean anything: %v", attempts)
		}
		in(func() error { return rec.Uninstall(context.Background()) })
	})
}
