// Package report holds audit's answer and writes it: the rows per
// published port and per egress policy, the explain paths, the Swarm
// cluster report, and their table and JSON forms (JSON field names are
// stable: scripts read them). Package audit fills it; cmd/dockmoat and
// the daemon's audit loop print or export it.
package report

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/rules"
)

// Exposure of one published port.
type Exposure string

const (
	Public     Exposure = "public"
	Restricted Exposure = "restricted"
	Local      Exposure = "local"
	Closed     Exposure = "closed"
	Unknowable Exposure = "unknown"
)

// Row is one published port of one container (JSON field names are stable).
type Row struct {
	Container     string   `json:"container"`
	Service       string   `json:"service,omitempty"`
	HostIP        string   `json:"host_ip"`
	HostPort      uint16   `json:"host_port"`
	Proto         string   `json:"proto"`
	ContainerPort uint16   `json:"container_port"`
	Exposure      Exposure `json:"exposure"`
	Sources       []string `json:"sources,omitempty"`
	Reason        string   `json:"reason"`
	// Needs is what a client must choose to get in when the default
	// first packet would not (a source port, an ECN SYN, an earlier
	// packet); SourcePort is that source port, when it is one.
	Needs      string `json:"needs,omitempty"`
	SourcePort uint16 `json:"source_port,omitempty"`
	Intended   bool   `json:"intended"`
	// RateLimit is the installed limit on new connections per source
	// ("10/minute,burst=5"), when the port has one.
	RateLimit string `json:"rate_limit,omitempty"`
	// Paths and Fix are filled for the ports `--explain` names only.
	Paths []Path `json:"paths,omitempty"`
	Fix   string `json:"fix,omitempty"`
	// Beyond is set when the port is reachable by someone the policy does
	// not allow; any such row makes audit exit 1.
	Beyond bool `json:"beyond_policy"`
}

// Report is audit's answer.
type Report struct {
	Protected bool     `json:"protected"`
	Findings  []string `json:"findings"`
	Rows      []Row    `json:"ports"`
	// Egress are the deny containers' outbound policies (egress.go).
	Egress []EgressRow `json:"egress,omitempty"`
}

// Beyond reports whether any port is reachable beyond its policy.
func (r Report) Beyond() bool {
	return slices.ContainsFunc(r.Rows, func(r Row) bool { return r.Beyond }) ||
		slices.ContainsFunc(r.Egress, func(e EgressRow) bool { return e.Beyond })
}

// Target selects the published ports to explain.
type Target struct {
	HostIP netip.Addr // zero: any
	Port   uint16
	Proto  string // "": any
}

// ParseTarget reads PORT, PORT/PROTO, HOST:PORT/PROTO or [V6]:PORT/PROTO.
func ParseTarget(s string) (Target, error) {
	var t Target
	rest, proto, hasProto := strings.Cut(s, "/")
	if hasProto {
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			return t, fmt.Errorf("--explain %q: protocol %q is not tcp, udp or sctp", s, proto)
		}
		t.Proto = proto
	}
	port := rest
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		host := strings.Trim(rest[:i], "[]")
		a, err := netip.ParseAddr(host)
		if err != nil {
			return t, fmt.Errorf("--explain %q: %q is not an address", s, host)
		}
		t.HostIP, port = a.Unmap(), rest[i+1:]
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return t, fmt.Errorf("--explain %q: want PORT[/PROTO] or HOST:PORT/PROTO", s)
	}
	t.Port = uint16(n)
	return t, nil
}

// Matches reports whether a binding is one the target names.
func (t *Target) Matches(b rules.PortBinding) bool {
	if t == nil || b.HostPort != t.Port || (t.Proto != "" && b.Proto != t.Proto) {
		return false
	}
	return !t.HostIP.IsValid() || !b.HostIP.IsValid() || b.HostIP.IsUnspecified() || b.HostIP == t.HostIP
}

// Path is the way one source class's first packet went.
type Path struct {
	Source string         `json:"source"` // "anyone" or the class, as the rules name it
	Needs  string         `json:"needs,omitempty"`
	Result string         `json:"result"` // accept, drop, unknown
	Steps  []verdict.Step `json:"steps"`
}

// Names reports whether a report row is one of the target's ports.
func (t Target) Names(r Row) bool {
	if r.HostPort != t.Port || (t.Proto != "" && r.Proto != t.Proto) {
		return false
	}
	a, err := netip.ParseAddr(r.HostIP)
	return !t.HostIP.IsValid() || err != nil || a.IsUnspecified() || a == t.HostIP
}

// EgressRow is one deny container's outbound policy in one family, and
// whether the installed rules enforce it.
type EgressRow struct {
	Container string   `json:"container"`
	Family    string   `json:"family"`
	Policy    string   `json:"policy"`
	DNS       []string `json:"dns,omitempty"`
	// Outside and Host are the verdicts of a first packet to a
	// destination the policy refuses: "refused" or "open", with the rule.
	Outside string `json:"outside"`
	Host    string `json:"host"`
	Beyond  bool   `json:"beyond_policy"`
}
