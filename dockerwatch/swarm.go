package dockerwatch

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// GatewayBridge is the bridge network through which Swarm gives a task
// that is only on overlay networks its way out, and through which its
// host-mode published ports are DNATed (`--publish mode=host`): Docker's
// rule is `! -i docker_gwbridge --dport P -j DNAT --to <gateway address>`.
// That address is not among the container's networks in a list or an
// inspect; only the network's own inspect names it, so the watcher reads
// it there for the containers that need it (needsGateway).
const GatewayBridge = "docker_gwbridge"

// IngressSandbox is the ingress routing mesh's endpoint on docker_gwbridge:
// every node DNATs an ingress-mode published port to it, keeping the port
// (nat chain DOCKER-INGRESS), and IPVS inside it balances to the tasks.
const IngressSandbox = "ingress-sbox"

// IngressPrefix names the snapshot entry of a Swarm service published
// through the routing mesh: "ingress/<service>". A container name never
// holds a slash, and a `container:` glob's * does not match one, so only
// a `service:` rule (or trusted_sources) can open it.
const IngressPrefix = "ingress/"

// needsGateway reports whether a container publishes ports but has no
// address on a bridge network: a Swarm task on overlay networks only,
// whose published ports go to its docker_gwbridge endpoint.
func needsGateway(ct rules.Container, netBridges map[string]string) bool {
	if len(ct.Ports) == 0 {
		return false
	}
	for _, ep := range ct.Endpoints {
		if _, ok := netBridges[ep.Network]; ok {
			return false
		}
	}
	return true
}

// gateway reads docker_gwbridge's endpoints by container ID once per
// refresh, and only if something needs them; none when the network does
// not exist (no Swarm on this node).
type gateway struct {
	w    *Watcher
	read bool
	eps  map[string]rules.Endpoint
}

func (g *gateway) endpoints(ctx context.Context) (map[string]rules.Endpoint, error) {
	if g.read {
		return g.eps, nil
	}
	res, err := g.w.API.NetworkInspect(ctx, GatewayBridge, client.NetworkInspectOptions{})
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("inspecting network %s: %w", GatewayBridge, err)
	default:
		g.eps = gatewayMap(res.Network.Containers)
	}
	g.read = true
	return g.eps, nil
}

func gatewayMap(containers map[string]network.EndpointResource) map[string]rules.Endpoint {
	out := map[string]rules.Endpoint{}
	for id, er := range containers {
		e := rules.Endpoint{Network: GatewayBridge, IPv4: er.IPv4Address.Addr().Unmap(), IPv6: er.IPv6Address.Addr()}
		if e.IPv4.IsValid() || e.IPv6.IsValid() {
			out[id] = e
		}
	}
	return out
}

// addTo gives each container that needsGateway its docker_gwbridge
// endpoint. A container the network does not list keeps no bridge
// address, so no allow names it: its ports stay closed until the next
// read finds it.
func (g *gateway) addTo(ctx context.Context, cts []rules.Container, netBridges map[string]string) error {
	for i, ct := range cts {
		if !needsGateway(ct, netBridges) {
			continue
		}
		eps, err := g.endpoints(ctx)
		if err != nil {
			return err
		}
		if e, ok := eps[ct.ID]; ok {
			cts[i].Endpoints = append(cts[i].Endpoints, e)
		}
	}
	return nil
}

// ingressServices returns the Swarm services this node publishes through
// the routing mesh, each as one snapshot entry (IngressContainer) whose
// endpoint is this node's ingress sandbox, and the cluster's nodes. The
// source is the ingress network's verbose view, which every node has —
// workers too, for services they run no task of; the service API is a
// manager's only. Off Swarm, or on a node without the sandbox, there are
// no entries.
func (w *Watcher) ingressServices(ctx context.Context, ingressNet string, g *gateway) ([]rules.Container, []netip.Addr, error) {
	if ingressNet == "" {
		return nil, nil, nil
	}
	view, err := w.API.IngressView(ctx, ingressNet)
	if errdefs.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	eps, err := g.endpoints(ctx)
	if err != nil {
		return nil, view.Peers, err
	}
	sbox, ok := eps[IngressSandbox]
	if !ok {
		return nil, view.Peers, nil
	}
	var out []rules.Container
	for name, ports := range view.Services {
		if ct := IngressContainer(name, ports, sbox); name != "" && len(ct.Ports) > 0 {
			out = append(out, ct)
		}
	}
	return out, view.Peers, nil
}

// IngressContainer is a mesh-published service as the policy sees it: its
// published ports, DNATed to the ingress sandbox's address with the port
// kept, selected by its Swarm service name. The ingress network names
// each port "Target: 80, Publish: 8080" without its protocol, so both TCP
// and UDP are listed: Docker DNATs only the protocol it publishes, and an
// allow matches only DNATed packets, so the other one opens nothing.
// The mesh is IPv4 (the ingress network and sandbox have no IPv6), so the
// ports are bound to 0.0.0.0: no IPv6 rule, and no docker-proxy path
// through INPUT, is ever derived from them.
func IngressContainer(service string, ports []string, sandbox rules.Endpoint) rules.Container {
	ct := rules.Container{ID: IngressPrefix + service, Name: IngressPrefix + service, Mesh: true,
		Labels: map[string]string{config.LabelSwarmService: service}, Endpoints: []rules.Endpoint{sandbox}}
	for _, p := range ports {
		var target, publish uint16
		if _, err := fmt.Sscanf(p, "Target: %d, Publish: %d", &target, &publish); err != nil || publish == 0 {
			continue
		}
		for _, proto := range []string{"tcp", "udp"} {
			b := rules.PortBinding{HostIP: netip.IPv4Unspecified(), HostPort: publish, ContainerPort: publish, Proto: proto}
			if !slices.Contains(ct.Ports, b) {
				ct.Ports = append(ct.Ports, b)
			}
		}
	}
	return ct
}

// serviceLabels lists, on a Swarm manager, the dockmoat.* labels set on
// services themselves (rules reports them: only managers can read them,
// so they cannot be one policy for the cluster); manager says whether the
// service API answered. Elsewhere it is refused and there are none; a
// failed read only loses a warning.
func (w *Watcher) serviceLabels(ctx context.Context, ingressNet string) (labels map[string]map[string]string, manager bool) {
	if ingressNet == "" {
		return nil, false
	}
	res, err := w.API.ServiceList(ctx, client.ServiceListOptions{})
	if err != nil {
		return nil, false
	}
	out := map[string]map[string]string{}
	for _, svc := range res.Items {
		for k, v := range svc.Spec.Labels {
			if strings.HasPrefix(strings.ToLower(k), rules.LabelPrefix) {
				if out[svc.Spec.Name] == nil {
					out[svc.Spec.Name] = map[string]string{}
				}
				out[svc.Spec.Name][k] = v
			}
		}
	}
	return out, true
}

// readSwarm reads what a pass needs of Swarm on this node: the mesh's
// entries, the node's place, the services' own labels. An error is the
// mesh's only (the caller logs it; the rest is read all the same).
func (w *Watcher) readSwarm(ctx context.Context, ingressNet string, g *gateway) ([]rules.Container, *rules.SwarmNode, map[string]map[string]string, error) {
	if ingressNet == "" {
		return nil, nil, nil, nil
	}
	mesh, peers, err := w.ingressServices(ctx, ingressNet, g)
	labels, manager := w.serviceLabels(ctx, ingressNet)
	return mesh, &rules.SwarmNode{Manager: manager, Peers: peers}, labels, err
}
