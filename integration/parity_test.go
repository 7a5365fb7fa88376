package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/audit/ipteval"
	"github.com/dockmoat/dockmoat/audit/nfteval"
	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/integration/testbed"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/netfilter/nft"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// TestRenderersAgree: the two backends render each policy their own way
// (iptables chains with one rule per allow; an nftables table with sets).
// For random policies, both are loaded into the kernel (iptables-legacy
// and nft, each in its own network namespace), read back as the kernel
// lists them, and every first packet of a published binding from each
// source class is run through both with audit's evaluators: both must
// accept and refuse the same packets. Policies are drawn so that
// allows, sources, per-port sources, trusted sources, host addresses and
// shared ports collide; some are in observe mode, some rate-limited.
func TestRenderersAgree(t *testing.T) {
	needBeds(t)
	ipns, nftns := scratchNetns(t, "dmpi"), scratchNetns(t, "dmpn")
	in := func(ns string, fn func() error) {
		t.Helper()
		if err := testbed.InNetns("/run/netns/"+ns, fn); err != nil {
			t.Fatal(err)
		}
	}
	in(ipns, func() error {
		for _, bin := range []string{"iptables-legacy", "ip6tables-legacy"} {
			for _, args := range [][]string{{"-N", "DOCKER"}, {"-N", "DOCKER-USER"}, {"-A", "FORWARD", "-j", "DOCKER-USER"}, {"-A", "DOCKER-USER", "-j", "RETURN"}} {
				if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
					return fmt.Errorf("%s %v: %w: %s", bin, args, err, out)
				}
			}
		}
		return nil
	})
	log := logrus.New()
	log.SetOutput(testWriter{t})
	var iptB, nftB netfilter.Backend
	in(ipns, func() error {
		v4, err := ipt.NewTables(ipt.VariantLegacy, 4)
		if err != nil {
			return err
		}
		v6, err := ipt.NewTables(ipt.VariantLegacy, 6)
		iptB = ipt.New(v4, v6, nil, log)
		return err
	})
	nftB = nft.New(nft.Exec{}, log)
	accepts, drops, observing, limited := 0, 0, 0, 0
	for seed := range uint64(24) {
		r := rand.New(rand.NewPCG(seed, 99))
		cfg, snap := randomPolicy(r)
		if cfg.Observe {
			observing++
		}
		if len(policy.Build(cfg, snap, rules.IPv4, policy.Options{}).Limits)+len(policy.Build(cfg, snap, rules.IPv6, policy.Options{}).Limits) > 0 {
			limited++
		}
		var ipv [2]ipteval.Ruleset
		var live *nftjson.Ruleset
		in(ipns, func() error {
			if err := passOn(iptB, cfg, snap); err != nil {
				return err
			}
			for i, bin := range []string{"iptables-legacy-save", "ip6tables-legacy-save"} {
				out, err := exec.Command(bin, "-t", "filter").Output()
				if err != nil {
					return fmt.Errorf("%s: %w", bin, err)
				}
				ipv[i] = ipteval.Ruleset{Filter: iptsave.Parse(out)["filter"]}
			}
			return nil
		})
		in(nftns, func() error {
			if err := passOn(nftB, cfg, snap); err != nil {
				return err
			}
			var err error
			live, err = nft.Exec{}.ListRuleset(context.Background())
			return err
		})
		for _, p := range parityPackets(snap) {
			fam := rules.IPv4
			if p.Src.Is6() {
				fam = rules.IPv6
			}
			a := ipv[map[rules.Family]int{rules.IPv4: 0, rules.IPv6: 1}[fam]].Eval("forward", p)
			b := nfteval.Ruleset{Live: live, Fam: fam}.Eval("forward", p)
			if a.Result == verdict.Unknown || b.Result == verdict.Unknown || a.Result != b.Result {
				t.Errorf("seed %d, %s %s:%d -> %s:%d/%s (published %d): iptables %s (%s: %s) but nftables %s (%s: %s)\nconfig %+v\ncontainers %+v",
					seed, fam, p.Src, p.SPort, p.Dst, p.DPort, p.Proto, p.OrigDstPort, a.Result, a.Chain, a.Rule, b.Result, b.Chain, b.Rule, cfg, snap.Containers)
				continue
			}
			if a.Result == verdict.Accept {
				accepts++
			} else {
				drops++
			}
		}
	}
	t.Logf("%d packets accepted and %d refused alike by both renderings (%d policies in observe mode, %d rate-limited)", accepts, drops, observing, limited)
	if accepts < 20 || drops < 20 || observing == 0 || limited == 0 {
		t.Errorf("the policies drawn must open and close ports, observe and limit: %d accepted, %d refused, %d observing, %d limited", accepts, drops, observing, limited)
	}
}

// scratchNetns is a new network namespace, deleted when the test ends.
func scratchNetns(t *testing.T, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	return ns
}

// passOn is one pass of a backend: Plan, then Apply.
func passOn(b netfilter.Backend, cfg config.Config, snap rules.Snapshot) error {
	ctx := context.Background()
	plans, err := b.Plan(ctx, cfg, snap, true)
	if err != nil {
		return err
	}
	_, err = b.Apply(ctx, plans)
	return err
}

// randomPolicy draws containers on docker0 from small pools (two
// addresses a family, three host ports, two container ports), labels
// from the label language (interfaces too), and sometimes trusted and
// denied sources and interfaces.
func randomPolicy(r *rand.Rand) (config.Config, rules.Snapshot) {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	cfg := config.Default()
	if r.IntN(3) == 0 {
		cfg.TrustedSources = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("2001:db8:9::/48")}
	}
	if r.IntN(4) == 0 {
		cfg.TrustedIfaces = []string{"tun*"}
	}
	cfg.Observe = r.IntN(6) == 0
	if r.IntN(3) == 0 {
		// Overlapping the sources the labels name, and the trusted ones.
		cfg.DenySources = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25"), netip.MustParsePrefix("10.9.1.0/24"), netip.MustParsePrefix("2001:db8::/33")}
		if r.IntN(2) == 0 {
			cfg.DenyIfaces = []string{"wg9"}
		}
	}
	snap := rules.Snapshot{Bridges: []string{"docker0"}}
	for i := range 2 + r.IntN(4) {
		c := rules.Container{ID: fmt.Sprint(i), Name: fmt.Sprintf("c%d", i), Labels: map[string]string{}}
		if v := pick("*", "8080", "8080,8081", "8082/udp", "8080-8082", ""); v != "" {
			c.Labels["dockmoat.allow"] = v
			if v := pick("", "", "198.51.100.0/24", "203.0.113.7, 2001:db8::/32", "iface:wg*", "iface:wg0, 198.51.100.0/24"); v != "" {
				c.Labels["dockmoat.from"] = v
			}
			if r.IntN(4) == 0 {
				c.Labels["dockmoat.allow.8081"] = "192.0.2.0/24, 2001:db8:1::/48"
			}
			if r.IntN(3) == 0 { // a first packet is under any limit
				c.Labels["dockmoat.limit."+pick("8080", "8081/udp", "8080-8082")] = pick("10/minute", "5/second,burst=2", "3/hour")
			}
		}
		for range 1 + r.IntN(2) {
			host := netip.MustParseAddr(pick("0.0.0.0", "::", "192.0.2.1"))
			c.Ports = append(c.Ports, rules.PortBinding{HostIP: host, HostPort: uint16(8080 + r.IntN(3)),
				ContainerPort: uint16([]int{80, 443}[r.IntN(2)]), Proto: pick("tcp", "udp")})
		}
		n := byte(2 + r.IntN(4))
		c.Endpoints = []rules.Endpoint{{Network: "bridge", IPv4: netip.AddrFrom4([4]byte{172, 17, 0, n}),
			IPv6: netip.AddrFrom16([16]byte{0: 0xfd, 15: n})}}
		snap.Containers = append(snap.Containers, c)
	}
	return cfg, snap
}

// parityPackets are the first packets of every published binding (as
// Docker DNATs them to each container address) from one source of each
// class the policies name, and one no policy names.
func parityPackets(snap rules.Snapshot) []verdict.Packet {
	srcs := map[bool][]string{
		false: {"198.51.100.5", "203.0.113.7", "203.0.113.8", "192.0.2.5", "10.9.1.1", "8.8.4.4"},
		true:  {"2001:db8::5", "2001:db8:1::5", "2001:db8:9::5", "2a00:1450::77"},
	}
	var out []verdict.Packet
	for _, c := range snap.Containers {
		for _, b := range c.Ports {
			for _, dst := range []netip.Addr{c.Endpoints[0].IPv4, c.Endpoints[0].IPv6} {
				if b.HostIP.Is4() != dst.Is4() {
					continue // Docker DNATs each family to its own address
				}
				orig := netip.MustParseAddr("203.0.113.1")
				if dst.Is6() {
					orig = netip.MustParseAddr("2001:db8:ff::1")
				}
				if !b.HostIP.IsUnspecified() {
					orig = b.HostIP
				}
				for _, s := range srcs[dst.Is6()] {
					// The public link, a VPN link (iface:wg*), a denied and a
					// trusted interface.
					for _, in := range []string{"eth0", "wg0", "wg9", "tun1"} {
						out = append(out, verdict.Packet{Src: netip.MustParseAddr(s), Dst: dst, Proto: b.Proto, SPort: 40000, DPort: b.ContainerPort,
							In: in, Out: "docker0", States: []string{"NEW", "DNAT"}, OrigDst: orig, OrigDstPort: b.HostPort})
					}
				}
			}
		}
	}
	return out
}
