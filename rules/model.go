// Package rules is dockmoat's pure core: configuration + container labels +
// container snapshots in, the decisions (who may reach which published
// port) and the iptables ruleset that enforces them out. It does no I/O
// and runs no commands, so every decision is made here and table-tested
// rule by rule. The nftables backend renders the same decisions itself
// (netfilter/nft, Render); the iptables rendering still lives here.
//
// Design. Traffic Docker forwards to containers passes FORWARD →
// DOCKER-USER before Docker's own ACCEPT rules. dockmoat owns two chains:
//
//	DOCKMOAT          classifier, reached by the single hook at the top of
//	                  DOCKER-USER: replies (ESTABLISHED,RELATED) and
//	                  traffic leaving a Docker network return untouched;
//	                  traffic entering a Docker network goes to INGRESS.
//	DOCKMOAT-INGRESS  new connections from outside to a container: trusted
//	                  sources and allowed ports RETURN (Docker accepts
//	                  them), then UFW's route rules if wanted, then DROP.
//
// An allow matches the published port as the client saw it
// (conntrack --ctorigdstport, plus --ctorigdst when the port is bound to
// one address) AND the container's current address and container port, and
// only connections Docker DNATed (--ctstate DNAT). A rule therefore never
// follows a stale address to another container, and routing straight to a
// container's address opens nothing.
//
// DOCKMOAT ends with rules for Docker bridges it has not been told about
// (docker0, br-*), so a network created while dockmoat is down is closed
// too. Clients that Docker does not DNAT (an IPv6 client of an IPv4-only
// container) are answered by docker-proxy through INPUT: DOCKMOAT-INPUT
// applies the same decisions there (proxy.go).
//
// With Options.Sets (the default where the kernel has ipset) the allows
// are set elements looked up by two fixed rules, followed by a check of
// the published port (sets.go); netfilter/nft renders the same for
// Docker's nftables backend. Incremental returns Build's result while keeping its
// work between calls, for passes over thousands of containers.
package rules

import (
	"net/netip"
)

// Family is an address family; each has its own table (iptables/ip6tables).
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// Has reports whether an address belongs to the family.
func (f Family) Has(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	return (f == IPv4) == a.Is4()
}

// PortBinding is one published port: HOST_IP:HOST_PORT → CONTAINER_PORT/PROTO.
type PortBinding struct {
	HostIP        netip.Addr // invalid or unspecified = all addresses
	HostPort      uint16
	ContainerPort uint16
	Proto         string // tcp, udp, sctp
}

// Endpoint is a container's attachment to a Docker network.
type Endpoint struct {
	Network string
	IPv4    netip.Addr
	IPv6    netip.Addr
}

// Container is the plain snapshot dockmoat needs of one running container.
type Container struct {
	ID        string
	Name      string // without Docker's leading slash
	Labels    map[string]string
	Ports     []PortBinding
	Endpoints []Endpoint
	// Rev, when not 0, is the source's revision of this container: a
	// source gives a new Rev whenever anything above may have changed
	// (dockerwatch: at every inspect and listing), so an equal ID and Rev
	// mean an equal container and the recomputation skips comparing
	// labels, ports and endpoints. 0 means: compare them.
	Rev uint64
}

// Snapshot is everything read from Docker for one recompute.
type Snapshot struct {
	Containers []Container
	// Bridges are the host interfaces of Docker's bridge networks
	// (docker0, br-<id>, or the name set by com.docker.network.bridge.name).
	Bridges []string
	// NetworkBridges maps network name → bridge interface (audit).
	NetworkBridges map[string]string
	// HostNetwork names running containers on the host network: their
	// ports bypass Docker's publishing and dockmoat (audit warns).
	HostNetwork []string
}

// protoNums are the IP protocol numbers of the protocols Docker publishes.
var protoNums = map[string]uint8{"tcp": 6, "udp": 17, "sctp": 132}

// ProtoNumber is the IP protocol number of a published port's protocol
// (0 for one Docker does not publish).
func ProtoNumber(name string) uint8 { return protoNums[name] }

// ProtoName is the inverse of ProtoNumber ("" for other protocols).
func ProtoName(n uint8) string {
	for name, num := range protoNums {
		if num == n {
			return name
		}
	}
	return ""
}
