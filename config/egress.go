package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/config/yamlkeys"
)

// Egress is outbound policy: the `egress:` rules of the file, for
// containers the user cannot label, and the resolvers Docker forwards
// DNS to when the host's resolv.conf does not say them.
type Egress struct {
	Rules []EgressRule
	// DNS, when set, replaces the resolvers read from the host's
	// resolv.conf (`egress_dns:`).
	DNS []netip.Addr
}

// EgressRule limits the outbound connections of the containers it
// selects (as AllowRule selects them).
type EgressRule struct {
	Container string
	Service   string
	Deny      bool
	Allow     []EgressDest
}

// Matches reports whether the rule selects a container.
func (r EgressRule) Matches(name string, labels map[string]string) bool {
	return AllowRule{Container: r.Container, Service: r.Service}.Matches(name, labels)
}

// EgressDest is one allowed destination: a prefix, optionally a port
// range, optionally one protocol. Without a port every protocol is
// allowed to the prefix; with a port and no protocol, TCP and UDP.
type EgressDest struct {
	Prefix netip.Prefix
	Lo, Hi uint16 // 0, 0: every port
	Proto  string // "", "tcp", "udp"
}

// AllPorts reports whether the destination names no port.
func (d EgressDest) AllPorts() bool { return d.Lo == 0 }

// Protos are the protocols the destination allows: nil for all.
func (d EgressDest) Protos() []string {
	switch {
	case d.Proto != "":
		return []string{d.Proto}
	case d.AllPorts():
		return nil
	}
	return []string{"tcp", "udp"}
}

// Allows reports whether a first packet to dst, port, proto is allowed.
func (d EgressDest) Allows(dst netip.Addr, port uint16, proto string) bool {
	if !d.Prefix.Contains(dst.Unmap()) {
		return false
	}
	if d.Proto != "" && d.Proto != proto {
		return false
	}
	if d.AllPorts() {
		return true
	}
	return (proto == "tcp" || proto == "udp") && port >= d.Lo && port <= d.Hi
}

// String writes the destination the way it is parsed.
func (d EgressDest) String() string {
	s := d.Prefix.String()
	if d.Prefix.IsSingleIP() {
		s = d.Prefix.Addr().String()
	}
	if !d.AllPorts() {
		if d.Prefix.Addr().Is6() {
			s = "[" + s + "]"
		}
		s += ":" + strconv.Itoa(int(d.Lo))
		if d.Hi != d.Lo {
			s += "-" + strconv.Itoa(int(d.Hi))
		}
	}
	if d.Proto != "" {
		s += "/" + d.Proto
	}
	return s
}

// ParseEgressList parses `dockmoat.egress.allow`: comma-separated
// destinations, CIDR[:PORT[-PORT]][/PROTO], an address standing for its
// host prefix; an IPv6 address or prefix with a port is written either
// as 2001:db8::/32:443 or in brackets, [2001:db8::1]:443.
func ParseEgressList(s string) ([]EgressDest, error) {
	return parseList(s, ParseEgressDest, "empty destination list: name at least one CIDR[:PORT[-PORT]][/PROTO]")
}

// ParseEgressDest parses one destination (see ParseEgressList).
func ParseEgressDest(s string) (EgressDest, error) {
	orig := s
	s = strings.TrimSpace(s)
	var d EgressDest
	if i := strings.LastIndex(s, "/"); i >= 0 {
		switch p := strings.ToLower(s[i+1:]); p {
		case "tcp", "udp":
			d.Proto, s = p, s[:i]
		}
	}
	addr, port, err := splitDest(s)
	if err != nil {
		return d, fmt.Errorf("destination %q: %w", orig, err)
	}
	if d.Prefix, err = ParseSource(addr); err != nil {
		return d, fmt.Errorf("destination %q: %w (an IPv6 address with a port goes in brackets: [2001:db8::1]:443)", orig, err)
	}
	if port != "" {
		lo, hi, ok := strings.Cut(port, "-")
		if !ok {
			hi = lo
		}
		if d.Lo, err = parsePort(lo); err == nil {
			d.Hi, err = parsePort(hi)
		}
		if err != nil || d.Hi < d.Lo {
			return d, fmt.Errorf("destination %q: bad port or range %q (want PORT or LOW-HIGH, 1-65535)", orig, port)
		}
	}
	return d, nil
}

// splitDest cuts "ADDR[/LEN][:PORT]" or "[ADDR[/LEN]]:PORT".
func splitDest(s string) (addr, port string, err error) {
	switch {
	case strings.HasPrefix(s, "["):
		j := strings.Index(s, "]")
		if j < 0 {
			return "", "", errors.New("missing ]")
		}
		addr, rest := s[1:j], s[j+1:]
		if rest == "" {
			return addr, "", nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", errors.New("want [ADDRESS]:PORT")
		}
		return addr, rest[1:], nil
	case strings.Contains(s, "/"):
		i := strings.Index(s, "/") + 1
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		addr, rest := s[:i], s[i:]
		if rest == "" {
			return addr, "", nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", errors.New("want CIDR[:PORT[-PORT]][/PROTO] (protocols: tcp, udp)")
		}
		return addr, rest[1:], nil
	case strings.Count(s, ":") == 1: // IPv4:PORT
		addr, port, _ := strings.Cut(s, ":")
		return addr, port, nil
	}
	return s, "", nil
}

type fileEgress struct {
	Container string   `yaml:"container"`
	Service   string   `yaml:"service"`
	Policy    string   `yaml:"policy"`
	Allow     []string `yaml:"allow"`
}

// parseEgress validates the `egress:` rules and `egress_dns:`.
func parseEgress(rules []fileEgress, dns []string, paths yamlkeys.Paths) (Egress, error) {
	var out Egress
	for i, f := range rules {
		r, err := parseEgressRule(f)
		if err != nil {
			return out, paths.At(fmt.Sprintf("egress[%d]", i), err)
		}
		out.Rules = append(out.Rules, r)
	}
	for i, s := range dns {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return out, paths.At(fmt.Sprintf("egress_dns[%d]", i), fmt.Errorf("want a resolver's address: %w", err))
		}
		out.DNS = append(out.DNS, a.Unmap())
	}
	return out, nil
}

func parseEgressRule(f fileEgress) (EgressRule, error) {
	sel, err := parseSelector(f.Container, f.Service)
	if err != nil {
		return EgressRule{}, err
	}
	r := EgressRule{Container: sel.Container, Service: sel.Service}
	switch strings.ToLower(strings.TrimSpace(f.Policy)) {
	case "", "deny":
		r.Deny = true
	case "allow":
		if len(f.Allow) > 0 {
			return r, errors.New("policy allow lets everything out: an allow list needs policy deny")
		}
	default:
		return r, fmt.Errorf("policy %q is not one of deny, allow", f.Policy)
	}
	for _, s := range f.Allow {
		d, err := ParseEgressDest(s)
		if err != nil {
			return r, fmt.Errorf("allow: %w", err)
		}
		r.Allow = append(r.Allow, d)
	}
	return r, nil
}
