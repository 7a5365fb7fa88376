package integration

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/integration/testbed"
	"github.com/dockmoat/dockmoat/netfilter/ipset"
	"github.com/dockmoat/dockmoat/netfilter/ipt"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/nfgen"
	"github.com/dockmoat/dockmoat/reconciler"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

type staticSource rules.Snapshot

func (s staticSource) Snapshot(context.Context) (rules.Snapshot, error) {
	return rules.Snapshot(s), nil
}

// TestKernelGolden applies a ruleset through the real iptables-nft and
// iptables-legacy binaries in a fresh network namespace and compares
// iptables-save with testdata/kernel.golden: the restore text is accepted
// by both variants, the hashes survive the round trip (the second pass
// writes nothing), and uninstall restores the table byte for byte.
func TestKernelGolden(t *testing.T) {
	needBeds(t)
	snap := rules.Snapshot{Bridges: []string{"docker0", "br-0123456789ab"}, Containers: []rules.Container{
		{ID: "1", Name: "web", Labels: map[string]string{"dockmoat.allow": "8080, 53/udp", "dockmoat.allow.8443": "198.51.100.0/24"},
			Ports: []rules.PortBinding{
				{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
				{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 53, ContainerPort: 53, Proto: "udp"},
				{HostIP: netip.MustParseAddr("192.0.2.10"), HostPort: 8443, ContainerPort: 443, Proto: "tcp"},
			},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")}}},
		{ID: "2", Name: "db", Ports: []rules.PortBinding{{HostPort: 5432, ContainerPort: 5432, Proto: "tcp"}},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.3")}}},
	}}
	cfg := config.Config{UFW: config.UFWAuto, LogBlocked: true, TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	type mode struct {
		v    ipt.Variant
		sets bool
	}
	for _, m := range []mode{{ipt.VariantNFT, false}, {ipt.VariantLegacy, false}, {ipt.VariantNFT, true}, {ipt.VariantLegacy, true}} {
		v := m.v
		name, golden := string(v), filepath.Join("testdata", "kernel.golden")
		if m.sets {
			name, golden = name+"-ipset", filepath.Join("testdata", "kernel-ipset.golden")
		}
		t.Run(name, func(t *testing.T) {
			ns := fmt.Sprintf("dmk%d%s%d", os.Getpid()%10000, v[:1], btoi(m.sets))
			if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			defer exec.Command("ip", "netns", "del", ns).Run()
			in := func(fn func() error) {
				t.Helper()
				if err := testbed.InNetns("/run/netns/"+ns, fn); err != nil {
					t.Fatal(err)
				}
			}
			bin := "iptables-" + string(v)
			// save is the filter table and, in ipset mode, dockmoat's sets
			// as the kernel holds them.
			save := func() string {
				var s string
				in(func() error {
					out, err := exec.Command(bin+"-save", "-t", "filter").Output()
					s = stripComments(string(out))
					if err != nil || !m.sets {
						return err
					}
					sets, err := ipset.Open()
					if err != nil {
						return err
					}
					defer sets.Close()
					for _, kind := range []string{policy.SetOpen, policy.SetFrom} {
						name := iptplan.SetName(kind, rules.IPv4)
						elems, ok, err := sets.List(name)
						if err != nil {
							return err
						}
						if ok {
							set := policy.NewSet(kind, rules.IPv4, elems)
							s += "# ipset " + name + "\n"
							for _, e := range set.Sorted() {
								s += e.String() + "\n"
							}
						}
					}
					return nil
				})
				return s
			}
			in(func() error {
				for _, args := range [][]string{
					{"-N", "DOCKER-USER"}, {"-A", "FORWARD", "-j", "DOCKER-USER"},
					{"-A", "DOCKER-USER", "-s", "192.0.2.99/32", "-j", "DROP"}, {"-A", "DOCKER-USER", "-j", "RETURN"},
					{"-N", "ufw-user-forward"},
				} {
					if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
						return fmt.Errorf("%s %v: %w: %s", bin, args, err, out)
					}
				}
				return nil
			})
			before := save()
			log := logrus.New()
			log.SetOutput(testWriter{t})
			var rec *reconciler.Reconciler
			in(func() error {
				tables, err := ipt.NewTables(v, 4)
				if err != nil {
					return err
				}
				var store ipt.SetStore
				if m.sets {
					sets, err := ipset.New()
					if err != nil {
						return err
					}
					store = sets
				}
				rec = reconciler.New(ipt.New(tables, nil, store, log), staticSource(snap), cfg, log)
				res, err := rec.Sync(context.Background())
				if err == nil && (!res.Applied || !res.HookFix) {
					err = fmt.Errorf("first pass did not apply: %+v", res)
				}
				return err
			})
			got := save()
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("iptables-save differs from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
			in(func() error {
				res, err := rec.Sync(context.Background())
				if err == nil && (res.Applied || res.HookFix) {
					err = fmt.Errorf("second pass rewrote rules: hashes did not survive iptables-save: %+v", res)
				}
				return err
			})
			// Drift: flush our chain and the hook, then repair.
			in(func() error {
				for _, args := range [][]string{{"-F", iptplan.ChainIngress}, {"-D", "DOCKER-USER", "1"}} {
					if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
						return fmt.Errorf("%v: %w: %s", args, err, out)
					}
				}
				_, err := rec.Sync(context.Background())
				return err
			})
			if s := save(); s != got {
				t.Errorf("repair did not restore the ruleset:\n%s", s)
			}
			in(func() error { return rec.Uninstall(context.Background()) })
			if after := save(); after != before {
				t.Errorf("uninstall did not restore the table:\n--- before\n%s\n--- after\n%s", before, after)
			}
		})
	}
}

func stripComments(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n") + "\n"
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// inFreshNetns runs fn on a thread in a network namespace of its own,
// made for it (named prefix and this process's id) and removed after.
func inFreshNetns(t *testing.T, prefix string, fn func() error) error {
	ns := fmt.Sprintf("%s%d", prefix, os.Getpid()%10000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	return testbed.InNetns("/run/netns/"+ns, fn)
}

// TestNFGeneration: the generation the iptables backend trusts its last
// listing by, read from a real kernel in a fresh namespace, moves with
// every committed change (iptables-nft or nft, ours or not) and only
// then; an ipset change, which is no nf_tables transaction, leaves it.
func TestNFGeneration(t *testing.T) {
	needBeds(t)
	err := inFreshNetns(t, "dmgen", func() error {
		step := func(what string, moves bool, args ...string) error {
			before, err := nfgen.Read()
			if err != nil {
				return err
			}
			if len(args) > 0 {
				if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
					return fmt.Errorf("%s: %v: %s", what, err, out)
				}
			}
			after, err := nfgen.Read()
			if err != nil {
				return err
			}
			if (after != before) != moves {
				t.Errorf("%s: generation %d → %d (should move: %v)", what, before, after, moves)
			}
			return nil
		}
		for _, s := range []struct {
			what  string
			moves bool
			args  []string
		}{
			{"nothing", false, nil},
			{"iptables-nft -N", true, []string{"iptables-nft", "-N", "DOCKER-USER"}},
			{"iptables-nft-save", false, []string{"iptables-nft-save", "-t", "filter"}},
			{"ipset create", false, []string{"ipset", "create", "dmgen", "hash:ip"}},
			{"ipset add", false, []string{"ipset", "add", "dmgen", "192.0.2.1"}},
			{"nft add table", true, []string{"nft", "add", "table", "inet", "dmgen"}},
			{"iptables-nft -A", true, []string{"iptables-nft", "-A", "DOCKER-USER", "-j", "RETURN"}},
		} {
			if err := step(s.what, s.moves, s.args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNFChanges: the notifications the iptables backend keeps a listing
// by, from a real kernel in a fresh namespace. What Docker's connect of
// a container writes (its nat table, its own filter chains), the other
// family and other tables leave the listing good; a rule in FORWARD,
// DOCKER-USER or dockmoat's chains, or a new chain, does not.
func TestNFChanges(t *testing.T) {
	needBeds(t)
	err := inFreshNetns(t, "dmchg", func() error {
		for _, args := range [][]string{{"iptables-nft", "-N", "DOCKER-USER"}, {"iptables-nft", "-N", "DOCKER"}, {"iptables-nft", "-t", "nat", "-N", "DOCKER"}} {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %v: %s", args, err, out)
			}
		}
		tables, err := ipt.NewTables(ipt.VariantNFT, 4)
		if err != nil {
			return err
		}
		changes, ok := tables.Changes.(*nfgen.Changes)
		if !ok {
			return fmt.Errorf("no nf_tables notifications in a fresh namespace")
		}
		defer changes.Close()
		from, err := nfgen.Read()
		if err != nil {
			return err
		}
		for _, s := range []struct {
			what  string
			quiet bool
			cmds  [][]string
		}{
			{"Docker's DNAT and its filter rule", true, [][]string{
				{"iptables-nft", "-t", "nat", "-A", "DOCKER", "-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "172.17.0.2:80"},
				{"iptables-nft", "-A", "DOCKER", "-d", "172.17.0.2", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"}}},
			{"IPv6 FORWARD", true, [][]string{{"ip6tables-nft", "-A", "FORWARD", "-j", "ACCEPT"}}},
			{"an nft table of someone else's", true, [][]string{{"nft", "add", "table", "inet", "dmchg"}}},
			{"an ACCEPT in FORWARD", false, [][]string{{"iptables-nft", "-I", "FORWARD", "-j", "ACCEPT"}}},
			{"a rule in DOCKER-USER", false, [][]string{{"iptables-nft", "-I", "DOCKER-USER", "-j", "RETURN"}}},
			{"a new chain", false, [][]string{{"iptables-nft", "-N", "DOCKMOAT"}}},
			{"a rule in DOCKMOAT", false, [][]string{{"iptables-nft", "-A", "DOCKMOAT", "-j", "DROP"}}},
			{"Docker's rule, then a flush of DOCKMOAT", false, [][]string{
				{"iptables-nft", "-A", "DOCKER", "-j", "RETURN"}, {"iptables-nft", "-F", "DOCKMOAT"}}},
			{"nothing", true, nil},
		} {
			for _, args := range s.cmds {
				if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
					return fmt.Errorf("%s: %v: %v: %s", s.what, args, err, out)
				}
			}
			to, err := nfgen.Read()
			if err != nil {
				return err
			}
			if len(s.cmds) > 0 && to == from {
				t.Errorf("%s: the generation did not move", s.what)
			}
			if got := changes.Quiet(from, to); got != s.quiet {
				t.Errorf("%s: generations %d → %d quiet %v, want %v", s.what, from, to, got, s.quiet)
			}
			from = to
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
