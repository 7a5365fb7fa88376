package dockerwatch

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

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

// gatewayEndpoints reads docker_gwbridge's endpoints by container ID;
// none when the network does not exist (no Swarm on this node).
func (w *Watcher) gatewayEndpoints(ctx context.Context) (map[string]rules.Endpoint, error) {
	res, err := w.API.NetworkInspect(ctx, GatewayBridge, client.NetworkInspectOptions{})
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inspecting network %s: %w", GatewayBridge, err)
	}
	return gatewayMap(res.Network.Containers), nil
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

// addGateways gives each container that needsGateway its docker_gwbridge
// endpoint, reading the network once and only if one needs it. A
// container the network does not list keeps no bridge address, so no
// allow names it: its ports stay closed until the next read finds it.
func (w *Watcher) addGateways(ctx context.Context, cts []rules.Container, netBridges map[string]string) error {
	var gw map[string]rules.Endpoint
	for i, ct := range cts {
		if !needsGateway(ct, netBridges) {
			continue
		}
		if gw == nil {
			var err error
			if gw, err = w.gatewayEndpoints(ctx); err != nil {
				return err
			}
			if gw == nil {
				return nil
			}
		}
		if e, ok := gw[ct.ID]; ok {
			cts[i].Endpoints = append(cts[i].Endpoints, e)
		}
	}
	return nil
}
