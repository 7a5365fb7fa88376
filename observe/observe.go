// Package observe keeps the record of observe mode (config.Observe): the
// connections to published ports that the policy refuses and dockmoat let
// through, per container, published port and source, with counts and
// times. The daemon feeds it the conntrack entries that carry
// rules.ObserveMark and keeps it in the state directory across restarts;
// `dockmoat suggest` turns it into the allow rules (or labels) that would
// keep exactly that traffic working once enforcing. It does no I/O.
package observe

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/reconciler"
	"github.com/dockmoat/dockmoat/rules"
)

// Record is what observe mode saw (JSON in the state directory).
type Record struct {
	Since time.Time `json:"since"`
	Ports []*Port   `json:"ports"`
}

// Port is one published port of one container and the sources seen.
type Port struct {
	Container string `json:"container"`
	// Service is the container's compose or Swarm service, if any
	// (config.ServiceOf): what an allow rule selects it by.
	Service string             `json:"service,omitempty"`
	Port    uint16             `json:"port"`
	Proto   string             `json:"proto"`
	Sources map[string]*Source `json:"sources"` // by address
}

// Source is one client address and its connections.
type Source struct {
	Count int       `json:"count"`
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Seen is one connection's new observation, for the log.
type Seen struct {
	Container string
	Port      uint16
	Proto     string
	Src       netip.Addr
}

func (s Seen) String() string {
	return fmt.Sprintf("%s %d/%s from %s", s.Container, s.Port, s.Proto, s.Src)
}

// Observer adds conntrack entries to a record, each connection once.
type Observer struct {
	Rec Record
	// live are the connections of the last Add: a connection stays in the
	// conntrack table across many polls and counts once.
	live map[reconciler.Flow]bool
}

// New starts an observer on a record (a loaded one, or a new one).
func New(rec Record, now time.Time) *Observer {
	if rec.Since.IsZero() {
		rec.Since = now
	}
	return &Observer{Rec: rec, live: map[reconciler.Flow]bool{}}
}

// Add counts the flows (conntrack entries with rules.ObserveMark) not
// seen in the last call, finding each one's container and published port
// in snap. It returns the new connections whose source is new for the
// port (what is worth a log line).
func (o *Observer) Add(flows []reconciler.Flow, snap rules.Snapshot, now time.Time) (conns int, fresh []Seen) {
	live := make(map[reconciler.Flow]bool, len(flows))
	for _, f := range flows {
		f.Mark = 0
		live[f] = true
		if o.live[f] {
			continue
		}
		c, b, ok := bindingOf(f, snap)
		if !ok {
			continue
		}
		conns++
		p := o.port(c, b)
		src, known := p.Sources[f.Src.String()]
		if !known {
			src = &Source{First: now}
			p.Sources[f.Src.String()] = src
			fresh = append(fresh, Seen{Container: c.Name, Port: b.HostPort, Proto: b.Proto, Src: f.Src})
		}
		src.Count++
		src.Last = now
	}
	o.live = live
	return conns, fresh
}

// port finds or adds the record's entry of a container's published port.
func (o *Observer) port(c rules.Container, b rules.PortBinding) *Port {
	svc := config.ServiceOf(c.Labels)
	for _, p := range o.Rec.Ports {
		if p.Container == c.Name && p.Port == b.HostPort && p.Proto == b.Proto {
			p.Service = svc
			return p
		}
	}
	p := &Port{Container: c.Name, Service: svc, Port: b.HostPort, Proto: b.Proto, Sources: map[string]*Source{}}
	o.Rec.Ports = append(o.Rec.Ports, p)
	slices.SortFunc(o.Rec.Ports, func(a, b *Port) int {
		return cmp.Or(cmp.Compare(a.Container, b.Container), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto))
	})
	return p
}

// bindingOf finds the container and published binding a flow reached:
// DNATed, by the container address and port it went to; served by
// docker-proxy (no DNAT: the reply comes from the address the client
// dialled), by the published port alone.
func bindingOf(f reconciler.Flow, snap rules.Snapshot) (rules.Container, rules.PortBinding, bool) {
	proxied := f.ReplySrc == f.OrigDst
	for _, c := range snap.Containers {
		if !proxied && !slices.ContainsFunc(c.Endpoints, func(ep rules.Endpoint) bool { return ep.IPv4 == f.ReplySrc || ep.IPv6 == f.ReplySrc }) {
			continue
		}
		for _, b := range c.Ports {
			if b.Proto == f.Proto && b.HostPort == f.OrigDstPort && (proxied || b.ContainerPort == f.ReplySrcPort) {
				return c, b, true
			}
		}
	}
	return rules.Container{}, rules.PortBinding{}, false
}
