// Package rules is dockmoat's pure core: configuration + container labels
// (those set at create; an image's are obeyed only when the config says
// so, image.go) + container snapshots in, decisions out: which published
// port of a container is open to whom (Decide), at what rate (limit.go),
// which containers may open which outbound connections (DecideEgress),
// and what is wrong with the labels or the snapshot (Problem). It also
// holds the snapshot's vocabulary (model.go) that the other packages
// share. It does no I/O and runs no commands, so every decision is made
// here and table-tested. Package rules/policy lays the decisions out as
// one family's policy (allow sets, the docker-proxy path), which the
// backends render: netfilter/ipt as iptables chains and ipsets,
// netfilter/nft as table inet dockmoat.
//
// The decisions are written so that a rendering can be exact. An allow
// names the published port as the client saw it (and the host address
// when the port is bound to one) AND the container's current address and
// container port, for connections Docker DNATed only: a rule therefore
// never follows a stale address to another container, and routing
// straight to a container's address opens nothing. DefaultBridges
// (docker0, br-*) cover the Docker networks not seen yet, so a network
// created while dockmoat is down is closed too. Clients that Docker does
// not DNAT (an IPv6 client of an IPv4-only container) are answered by
// docker-proxy on the host (proxy.go).
//
// The names of labels and the comment prefix and marks both backends use
// are defined here; the iptables chain and ipset names are
// netfilter/ipt/iptplan's (iptplan.ChainMain …).
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
	// HostIface is the host end of the container's veth on this network
	// ("" when unknown): egress is bound to it (dockerwatch/veth.go).
	HostIface string
}

// Container is the plain snapshot dockmoat needs of one running container.
type Container struct {
	ID     string
	Name   string // without Docker's leading slash
	Labels map[string]string
	// ImageLabels are dockmoat's labels that came with the container's
	// image, kept out of Labels (image.go).
	ImageLabels map[string]string
	Ports       []PortBinding
	Endpoints   []Endpoint
	// Sandbox is the path of the container's network namespace (Docker's
	// SandboxKey), "" when not known: how its veths are found.
	Sandbox string
	// SharesNetOf is the container whose network namespace this one
	// uses (network_mode container:<id>), "" for none.
	SharesNetOf string
	// Mesh marks a Swarm service published through the routing mesh
	// (dockerwatch.IngressContainer): reached only through Docker's DNAT
	// to the node's ingress sandbox, never through docker-proxy.
	Mesh bool
	// Starting marks an entry read while Docker starts the container
	// (dockerwatch/starting.go): its labels and explicit bindings from
	// its creation, its addresses from the networks it was just connected
	// to, its interfaces not known yet. The start's inspect replaces it.
	Starting bool
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
	// Links are the names of the host's network interfaces that are not
	// a bridge's ports (no routed packet leaves by a port; containers'
	// veths are ports), read beside Docker's view (dockerwatch): a br-*
	// one Docker does not list is the host's (ForeignBridges), the others
	// not Docker's are where the host's port forwards go (HostOutIfaces).
	// Nil when unknown.
	Links []string
	// NetworkBridges maps network name → bridge interface (audit).
	NetworkBridges map[string]string
	// Direct maps network name → driver for the networks that put a
	// container on the LAN's own link (macvlan, ipvlan): its traffic
	// never crosses the host's forwarding, so dockmoat filters none of it
	// (unenforced.go).
	Direct map[string]string
	// HostNetwork names running containers on the host network: their
	// ports bypass Docker's publishing and dockmoat (audit warns).
	HostNetwork []string
	// ServiceLabels, on a Swarm manager, are the dockmoat.* labels set on
	// services themselves, by service name: reported, never applied
	// (swarm.go says why).
	ServiceLabels map[string]map[string]string
	// Swarm is this node's place in a Swarm (audit checks Swarm's own
	// ports against it); nil off Swarm.
	Swarm *SwarmNode
	// DNS are the resolvers Docker's embedded resolver forwards
	// containers' queries to (dockerwatch reads them as Docker does, from
	// the host's resolv.conf): egress deny lets port 53 to them through.
	DNS []netip.Addr
}

// SwarmNode is what audit needs of the Swarm a node is in.
type SwarmNode struct {
	// Manager: the service API answers, so the node serves 2377/tcp.
	Manager bool
	// Peers are the cluster's nodes' addresses (the ingress network's
	// peers): the only sources Swarm's own ports need.
	Peers []netip.Addr
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
