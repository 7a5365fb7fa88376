package reconciler

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// Revocation runs beside the passes, not inside them. A pass that changed
// what is installed hands its result to one worker goroutine and returns
// as soon as the firewall is written: new connections meet the new policy
// from that instant. The worker then works out which access was withdrawn
// and walks the conntrack table to cut the sessions that lost it. That
// walk costs ~9 ms whatever N is (the kernel dumps every bucket of its
// conntrack hash, 262,144 here, even when the table is empty); on the pass
// it would be most of a one-container change.
//
// The worker takes every queued result in order, so access opened by one
// pass and withdrawn by the next is still seen as withdrawn, and makes one
// walk per family for the whole queue: a session is cut when some earlier
// state allowed it and the newest does not.
//
// The first result of a family, and the result of a pass that repaired
// drift, also sweep: a session that no state of dockmoat's allowed (opened
// before dockmoat ran, or while its rules were gone) is cut when the
// newest state does not allow it (see swept).

// revJob is one pass's result for one family.
type revJob struct {
	fam     rules.Family
	res     policy.Result
	trusted trust // without via: the worker looks routes up
	sweep   bool
	bridges []string // the Docker networks' bridges at that pass
}

// revoker is the queue and the worker's state. open is touched only by
// the worker (at most one runs at a time).
type revoker struct {
	queue   []revJob
	running bool
	idle    chan struct{} // closed when the worker stops; nil before
	seeded  map[rules.Family]bool
	open    map[rules.Family]openAccess
	// egress is each family's last egress policy (egressKey).
	egress map[rules.Family]string
	total  uint
}

// queueRevocation hands a result to the worker, starting it if needed.
// Results are immutable once built, so the worker may read them later
// (and makes their flat lists: policy.Result.Decisions).
// changed says whether the pass changed anything installed; a result that
// changed nothing is only queued as the first "before" of a family.
func (r *Reconciler) queueRevocation(fam rules.Family, res policy.Result, changed, drifted bool) {
	if r.ct == nil {
		return
	}
	rv := &r.rev
	r.revMu.Lock()
	defer r.revMu.Unlock()
	if rv.seeded == nil {
		rv.seeded, rv.open, rv.egress = map[rules.Family]bool{}, map[rules.Family]openAccess{}, map[rules.Family]string{}
	}
	if !changed && !drifted && rv.seeded[fam] {
		return
	}
	sweep := drifted || !rv.seeded[fam]
	rv.seeded[fam] = true
	rv.queue = append(rv.queue, revJob{fam: fam, res: res, trusted: trust{prefixes: r.config().TrustedSources, ifaces: r.config().TrustedIfaces}, sweep: sweep, bridges: r.bridges})
	if !rv.running {
		rv.running, rv.idle = true, make(chan struct{})
		go r.revokeLoop(rv.idle)
	}
}

func (r *Reconciler) revokeLoop(idle chan struct{}) {
	rv := &r.rev
	for {
		r.revMu.Lock()
		jobs := rv.queue
		rv.queue = nil
		if len(jobs) == 0 {
			rv.running = false
			close(idle)
			r.revMu.Unlock()
			return
		}
		r.revMu.Unlock()
		befores := map[rules.Family][]openAccess{}
		sweeps := map[rules.Family]map[hostPort]bool{}
		var trusted trust
		var bridges []string
		egress := map[rules.Family][]rules.Egress{}
		for _, j := range jobs {
			if k := egressKey(j.res.Egress); k != rv.egress[j.fam] || (j.sweep && k != "") {
				egress[j.fam], rv.egress[j.fam] = j.res.Egress, k
			} else if egress[j.fam] != nil {
				egress[j.fam] = j.res.Egress // cut against the newest policy
			}
			now := accessOf(j.res.Decisions(), j.res.Allows())
			if before, known := rv.open[j.fam]; known && withdrawn(before, now) {
				befores[j.fam] = append(befores[j.fam], before)
			}
			if j.sweep {
				sweeps[j.fam] = publishedPorts(j.res.Decisions())
			} else if sweeps[j.fam] != nil {
				sweeps[j.fam] = publishedPorts(j.res.Decisions()) // sweep against the newest state
			}
			rv.open[j.fam], trusted, bridges = now, j.trusted, j.bridges
		}
		for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			if len(befores[fam]) == 0 && sweeps[fam] == nil && egress[fam] == nil {
				continue
			}
			match := r.matcher(befores[fam], rv.open[fam], sweeps[fam], egress[fam], trusted, bridges)
			n, err := r.ct.Delete(fam, match)
			if err != nil {
				r.log.WithError(err).Warn("could not cut sessions whose access was withdrawn")
				continue
			}
			if n > 0 {
				r.log.WithFields(logrus.Fields{"family": fam.String(), "sessions": n}).Info("cut live sessions whose access was withdrawn")
			}
			r.revMu.Lock()
			rv.total += n
			r.revMu.Unlock()
		}
	}
}

// matcher joins what one walk of a family cuts: sessions whose access
// was withdrawn (befores → now), with pub the sweep's published ports,
// and with eg the outbound sessions egress refuses.
func (r *Reconciler) matcher(befores []openAccess, now openAccess, pub map[hostPort]bool, eg []rules.Egress, trusted trust, bridges []string) func(Flow) bool {
	if len(trusted.ifaces) > 0 || namesIface(now) || slices.ContainsFunc(befores, namesIface) {
		trusted.via = r.routes()
	}
	match := revoked(befores, now, trusted)
	var local []netip.Prefix // the host's interfaces, read once
	if pub != nil || eg != nil {
		local = r.localNets(bridges)
	}
	if pub != nil {
		sweep, revoke := swept(pub, now, trusted, local), match
		match = func(f Flow) bool { return revoke(f) || sweep(f) }
	}
	if eg != nil {
		cut, before := egressCut(eg, local), match
		match = func(f Flow) bool { return before(f) || cut(f) }
	}
	return match
}

// WaitRevocations waits until the sessions of every pass so far are cut
// and returns how many were cut since the reconciler started.
func (r *Reconciler) WaitRevocations() uint {
	for {
		r.revMu.Lock()
		if !r.rev.running {
			defer r.revMu.Unlock()
			return r.rev.total
		}
		idle := r.rev.idle
		r.revMu.Unlock()
		<-idle
	}
}

// interfaceNets lists where sources count as local for a sweep: every
// address of the host (as a host prefix) and the whole subnets of the
// Docker networks' bridges (containers talking to published ports).
func interfaceNets(bridges []string) []netip.Prefix {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		bridge := slices.Contains(bridges, ifc.Name) || ifc.Name == "docker0" || strings.HasPrefix(ifc.Name, "br-")
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(ipn.IP)
			ones, _ := ipn.Mask.Size()
			p := netip.PrefixFrom(ip.Unmap(), ones)
			if !bridge {
				p = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
			}
			out = append(out, p.Masked())
		}
	}
	return out
}

// namesIface reports whether some open binding allows an interface.
func namesIface(a openAccess) bool {
	for _, srcs := range a {
		if slices.ContainsFunc(srcs, func(s config.Sources) bool { return len(s.Ifaces) > 0 }) {
			return true
		}
	}
	return false
}

// routes returns the lookup of the interface the host routes an address
// by, asked of the kernel once per address for one walk.
func (r *Reconciler) routes() viaFunc {
	seen := map[netip.Addr]string{}
	return func(a netip.Addr) string {
		name, ok := seen[a]
		if !ok {
			name = r.routeIface(a)
			seen[a] = name
		}
		return name
	}
}

// routeIface asks the kernel which interface it routes a to ("" when it
// cannot tell).
func routeIface(a netip.Addr) string {
	routes, err := netlink.RouteGet(a.AsSlice())
	if err != nil || len(routes) == 0 {
		return ""
	}
	ifc, err := net.InterfaceByIndex(routes[0].LinkIndex)
	if err != nil {
		return ""
	}
	return ifc.Name
}
