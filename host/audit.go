package host

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/audit"
	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/dockerwatch"
	"github.com/dockmoat/dockmoat/netfilter/ipset"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/nft"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/setelem"
)

// Audit reads Docker and the live ruleset and evaluates them (the audit
// command, and the daemon's scheduled audit).
func Audit(ctx context.Context, opt Options, log *logrus.Logger, cfg config.Config, explain *report.Target) (report.Report, error) {
	if backend, _, err := DetectBackend(ctx, opt.Backend); err == nil && backend == "nftables" {
		return auditNFT(ctx, opt, log, cfg, explain)
	}
	tables, w, err := tables(ctx, opt, log)
	if err != nil {
		return report.Report{}, err
	}
	defer closeDocker(w)
	snap, err := w.Snapshot(ctx)
	if err != nil {
		return report.Report{}, fmt.Errorf("reading containers from Docker: %w", err)
	}
	in := audit.Input{Config: cfg, Snapshot: snap, Ifaces: outsideInterfaces(snap.Bridges)}
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		t := tables[fam]
		if t == nil {
			continue
		}
		st := audit.FamilyState{Family: fam, Tool: t.Tool}
		var parts []string
		for _, table := range []string{"filter", "nat"} {
			data, err := t.Save(ctx, table)
			if err != nil {
				st.Err = err
				break
			}
			parts = append(parts, string(data))
		}
		// raw holds Docker 28's drop for loopback-bound ports; a host
		// without a raw table has no such drop.
		if st.Err == nil && hasRawTable(t.Tool, fam) {
			if data, err := t.Save(ctx, "raw"); err == nil {
				parts = append(parts, string(data))
			}
		}
		if st.Err == nil {
			st.Save = strings.Join(parts, "\n")
			st.Sets = readSets(fam)
		} else if fam == rules.IPv4 {
			return report.Report{}, fmt.Errorf("reading the ruleset (need root/NET_ADMIN): %w", st.Err)
		}
		in.Families = append(in.Families, st)
	}
	in.Explain = explain
	rep := audit.Run(in)
	rep.Findings = append(rep.Findings, firewalldFindings(ctx, log, true)...)
	return rep, nil
}

// closeDocker closes a watcher's Docker client: the daemon's scheduled
// audit makes one per run.
func closeDocker(w *dockerwatch.Watcher) {
	if c, ok := w.API.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// hasRawTable: iptables-legacy-save would make the kernel load the raw
// table just to list it; audit changes nothing, so legacy asks
// /proc/net/ip*_tables_names first. nft lists without creating.
func hasRawTable(tool string, fam rules.Family) bool {
	if !strings.Contains(tool, "legacy") {
		return true
	}
	names := "/proc/net/ip_tables_names"
	if fam == rules.IPv6 {
		names = "/proc/net/ip6_tables_names"
	}
	data, err := os.ReadFile(names)
	return err == nil && slices.Contains(strings.Fields(string(data)), "raw")
}

// readSets reads dockmoat's ipsets of a family, the ban set included
// (none when the kernel has no ipset support).
func readSets(fam rules.Family) map[string][]setelem.Elem {
	sets, err := ipset.Open()
	if err != nil {
		return nil
	}
	defer sets.Close()
	out := map[string][]setelem.Elem{}
	for _, kind := range []string{policy.SetOpen, policy.SetFrom} {
		name := iptplan.SetName(kind, fam)
		if elems, ok, err := sets.List(name); err == nil && ok {
			out[name] = elems
		}
	}
	// The ban set's prefixes, as elements of a source alone.
	if nets, ok, err := sets.ListNets(iptplan.BanSet(fam)); err == nil && ok {
		elems := []setelem.Elem{}
		for _, p := range nets {
			elems = append(elems, setelem.Elem{Src: p})
		}
		out[iptplan.BanSet(fam)] = elems
	}
	return out
}

// outsideInterfaces lists the interfaces a connection from outside can
// arrive on: up, with addresses, and not loopback, a Docker bridge or a
// container's veth.
func outsideInterfaces(bridges []string) []audit.Iface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []audit.Iface
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || slices.Contains(bridges, ifc.Name) ||
			strings.HasPrefix(ifc.Name, "veth") || ifc.Name == "docker_gwbridge" {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		a := audit.Iface{Name: ifc.Name}
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
					a.Addrs = append(a.Addrs, ip.Unmap())
				}
			}
		}
		if len(a.Addrs) > 0 {
			out = append(out, a)
		}
	}
	return out
}

// auditNFT audits Docker's nftables backend: the whole ruleset (`nft -j
// list ruleset`: Docker's tables, dockmoat's, anyone else's) is evaluated
// the same way, and dockmoat's plan says whether its table is intact.
func auditNFT(ctx context.Context, opt Options, log *logrus.Logger, cfg config.Config, explain *report.Target) (report.Report, error) {
	rec, w, err := Open(ctx, opt, log, cfg)
	if err != nil {
		return report.Report{}, err
	}
	defer closeDocker(w)
	snap, err := w.Snapshot(ctx)
	if err != nil {
		return report.Report{}, fmt.Errorf("reading containers from Docker: %w", err)
	}
	plans, err := rec.Plan(ctx)
	if err != nil {
		return report.Report{}, err
	}
	live, err := nft.Exec{}.ListRuleset(ctx)
	if err != nil {
		return report.Report{}, err
	}
	in := audit.Input{Config: cfg, Snapshot: snap, NFT: live, Ifaces: outsideInterfaces(snap.Bridges)}
	if len(plans) > 0 && plans[0].InSync() {
		in.Protected = true
		in.Findings = append(in.Findings, "dockmoat protection installed and intact (table inet dockmoat)")
	} else {
		in.Findings = append(in.Findings, "dockmoat table inet dockmoat missing or NOT intact; is dockmoat running?")
	}
	in.Explain = explain
	rep := audit.Run(in)
	rep.Findings = append(rep.Findings, firewalldFindings(ctx, log, false)...)
	return rep, nil
}
