package reconciler

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/ipt"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptfake"
	"github.com/dockmoat/dockmoat/rules"
)

// BenchmarkPassOneChange is the Go side of a pass (policy, diff, set
// writes) at 10,000 published ports when one container moved, against
// in-memory iptables and sets: the part of goal 3b that is ours rather
// than the kernel's (`make bench` measures the whole pass on a real one).
// In "alone" nothing revokes: the pass only, up to the firewall write,
// without the revocation worker's walk of the decisions beside it.
func BenchmarkPassOneChange(b *testing.B) {
	for _, run := range []struct {
		n      int
		revoke bool
	}{{10, true}, {10000, true}, {10000, false}} {
		name := strconv.Itoa(run.n)
		if !run.revoke {
			name += "/alone"
		}
		n := run.n
		b.Run(name, func(b *testing.B) {
			snap := rules.Snapshot{Bridges: []string{"docker0"}}
			for i := 0; i < n; i++ {
				snap.Containers = append(snap.Containers, rules.Container{ID: strconv.Itoa(i), Name: fmt.Sprintf("c%d", i),
					Labels:    map[string]string{"dockmoat.allow": "*"},
					Ports:     []rules.PortBinding{{HostPort: uint16(10000 + i), ContainerPort: 80, Proto: "tcp"}},
					Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}}, Rev: uint64(i + 1)})
			}
			v4 := iptfake.New("DOCKER", "DOCKER-USER")
			v4.Append("FORWARD", "-j DOCKER-USER")
			d := &fakeDocker{snap: snap}
			log := logrus.New()
			log.SetLevel(logrus.WarnLevel)
			// As on iptables-nft: the pass lists only after a change.
			t := &ipt.Tables{IPTables: v4, Restorer: v4, Tool: "fake", Generation: v4.Generation}
			rec := New(ipt.New(t, nil, iptfake.NewSets(), log), d, config.Default(), log)
			if run.revoke {
				rec.SetConntrack(&fakeCT{}) // revocation runs, as in the daemon
			}
			if _, err := rec.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d.snap.Containers[0].Endpoints[0].IPv4 = netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})
				d.snap.Containers[0].Rev = uint64(n + i + 1) // as dockerwatch: a new revision per inspect
				if _, err := rec.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFirstPass is the Go side of a first pass (policy from nothing,
// render, every set element written) at 10,000 published ports, against
// in-memory iptables and sets: goal 3's part that is ours.
func BenchmarkFirstPass(b *testing.B) {
	snap := rules.Snapshot{Bridges: []string{"docker0"}}
	for i := 0; i < 10000; i++ {
		snap.Containers = append(snap.Containers, rules.Container{ID: strconv.Itoa(i), Name: fmt.Sprintf("c%d", i),
			Labels:    map[string]string{"dockmoat.allow": "*"},
			Ports:     []rules.PortBinding{{HostPort: uint16(10000 + i), ContainerPort: 80, Proto: "tcp"}},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}}, Rev: uint64(i + 1)})
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	for i := 0; i < b.N; i++ {
		v4 := iptfake.New("DOCKER", "DOCKER-USER")
		v4.Append("FORWARD", "-j DOCKER-USER")
		t := &ipt.Tables{IPTables: v4, Restorer: v4, Tool: "fake", Generation: v4.Generation}
		rec := New(ipt.New(t, nil, iptfake.NewSets(), log), &fakeDocker{snap: snap}, config.Default(), log)
		if _, err := rec.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
