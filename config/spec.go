package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// PortSpec is one entry of a port list: a published (host) port or range,
// optionally limited to one protocol. All means `*`.
type PortSpec struct {
	All      bool
	From, To uint16 // inclusive; From == To for a single port
	Proto    string // "" = any protocol the port is published on
}

// Protocols dockmoat knows how to match with conntrack.
var knownProtos = map[string]bool{"tcp": true, "udp": true, "sctp": true}

// Matches reports whether a published port/protocol falls in the spec.
func (p PortSpec) Matches(port uint16, proto string) bool {
	if p.Proto != "" && p.Proto != proto {
		return false
	}
	return p.All || (port >= p.From && port <= p.To)
}

func (p PortSpec) String() string {
	s := "*"
	if !p.All {
		s = strconv.Itoa(int(p.From))
		if p.To != p.From {
			s += "-" + strconv.Itoa(int(p.To))
		}
	}
	if p.Proto != "" {
		s += "/" + p.Proto
	}
	return s
}

// ParsePortSpec parses "8080", "443/tcp", "9000-9010", "51820/udp" or "*".
func ParsePortSpec(s string) (PortSpec, error) {
	s = strings.TrimSpace(s)
	var spec PortSpec
	body, proto, hasProto := strings.Cut(s, "/")
	if hasProto {
		proto = strings.ToLower(strings.TrimSpace(proto))
		if !knownProtos[proto] {
			return spec, fmt.Errorf("%q: protocol %q is not tcp, udp or sctp", s, proto)
		}
		spec.Proto = proto
	}
	body = strings.TrimSpace(body)
	if body == "*" {
		spec.All = true
		return spec, nil
	}
	lo, hi, isRange := strings.Cut(body, "-")
	from, err := parsePort(lo)
	if err != nil {
		return spec, fmt.Errorf("%q: %w", s, err)
	}
	to := from
	if isRange {
		if to, err = parsePort(hi); err != nil {
			return spec, fmt.Errorf("%q: %w", s, err)
		}
		if to < from {
			return spec, fmt.Errorf("%q: range end %d is below its start %d", s, to, from)
		}
	}
	spec.From, spec.To = from, to
	return spec, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty port")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// ParsePortList parses a comma-separated list of port specs.
func ParsePortList(s string) ([]PortSpec, error) {
	return parseList(s, ParsePortSpec, "no ports listed (want e.g. \"8080, 443/tcp, 9000-9010\" or \"*\")")
}

// parseList parses a comma-separated list, empty items skipped; a list
// with no item is the error none.
func parseList[T any](s string, parse func(string) (T, error), none string) ([]T, error) {
	var out []T
	for _, item := range strings.Split(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		v, err := parse(item)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New(none)
	}
	return out, nil
}

// Source is a network allowed to connect, always in canonical prefix form
// (a bare address becomes a /32 or /128).
type Source = netip.Prefix

// ParseSource parses a CIDR or a single address.
func ParseSource(s string) (Source, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Source{}, fmt.Errorf("%q is not a valid CIDR", s)
		}
		if p.Addr().Is4In6() {
			return Source{}, fmt.Errorf("%q: IPv4-mapped IPv6 prefixes are not supported; write the IPv4 CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return Source{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Sources is a source list; Any means everyone (the word `any`). Ifaces
// are the interfaces (`iface:NAME`, a trailing * a glob) a connection
// may arrive on, whatever its source address.
type Sources struct {
	Any      bool
	Prefixes []Source
	Ifaces   []string
}

// IfacePrefix marks an interface source: `iface:wg0`, `iface:wg*`.
const IfacePrefix = "iface:"

// ParseIface reads the NAME of `iface:NAME`: an interface name (at most
// 15 characters of letters, digits, _ . -) with an optional trailing * (a
// glob: every interface whose name starts so). The kernel compares names
// only, so a * elsewhere, or any other pattern, is refused rather than
// read as something that matches more than was meant.
func ParseIface(name string) (string, error) {
	stem := strings.TrimSuffix(name, "*")
	if stem == "" || len(name) > 15 || strings.Trim(stem, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != "" {
		return "", fmt.Errorf("%q: want iface:NAME with an interface name of at most 15 letters, digits, _ . or -, and an optional trailing * (iface:wg0, iface:wg*)", IfacePrefix+name)
	}
	return name, nil
}

// ParseSources parses "any" or a comma-separated list of CIDRs, addresses
// and interfaces (iface:NAME).
func ParseSources(s string) (Sources, error) {
	var out Sources
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.EqualFold(item, "any") {
			out.Any = true
			continue
		}
		if name, ok := strings.CutPrefix(item, IfacePrefix); ok {
			ifc, err := ParseIface(name)
			if err != nil {
				return Sources{}, err
			}
			out.Ifaces = append(out.Ifaces, ifc)
			continue
		}
		p, err := ParseSource(item)
		if err != nil {
			return Sources{}, err
		}
		out.Prefixes = append(out.Prefixes, p)
	}
	if !out.Any && len(out.Prefixes) == 0 && len(out.Ifaces) == 0 {
		return Sources{}, fmt.Errorf("no sources listed (want CIDRs such as \"198.51.100.0/24\", iface:NAME, or \"any\")")
	}
	if out.Any {
		out.Prefixes, out.Ifaces = nil, nil
	}
	out.Ifaces = sortedIfaces(out.Ifaces)
	return out, nil
}

// Union merges two source lists, sorted and without duplicates; everyone
// wins over any list.
func (s Sources) Union(o Sources) Sources {
	if s.Any || o.Any {
		return Sources{Any: true}
	}
	seen := map[Source]bool{}
	var out Sources
	for _, p := range append(append([]Source{}, s.Prefixes...), o.Prefixes...) {
		if !seen[p] {
			seen[p] = true
			out.Prefixes = append(out.Prefixes, p)
		}
	}
	slices.SortFunc(out.Prefixes, func(a, b Source) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	if len(s.Ifaces)+len(o.Ifaces) > 0 {
		out.Ifaces = sortedIfaces(append(slices.Clone(s.Ifaces), o.Ifaces...))
	}
	return out
}

// IfaceMatches reports whether the interface name is one a pattern of
// ParseIface names (a trailing * matching any rest).
func IfaceMatches(pattern, name string) bool {
	if stem, glob := strings.CutSuffix(pattern, "*"); glob {
		return strings.HasPrefix(name, stem)
	}
	return pattern == name
}

// IfaceIn reports whether one of the patterns (iface:NAME) names the
// interface.
func IfaceIn(patterns []string, name string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return IfaceMatches(p, name) })
}

// sortedIfaces sorts interface patterns and drops duplicates, in place.
func sortedIfaces(ifaces []string) []string {
	slices.Sort(ifaces)
	return slices.Compact(ifaces)
}
