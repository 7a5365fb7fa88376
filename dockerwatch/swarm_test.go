package dockerwatch

import (
	"context"
	"net/netip"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"

	"github.com/dockmoat/dockmoat/rules"
)

// A Swarm task on an overlay network only publishes its host-mode ports
// through its docker_gwbridge endpoint, which neither a list nor an
// inspect of the container shows: the snapshot must carry it, or an
// allow would name the overlay address that no DNAT targets.
func TestSwarmTaskGetsGatewayEndpoint(t *testing.T) {
	task := func(id, addr string) container.Summary {
		return container.Summary{
			ID: id, Names: []string{"/hov.1." + id},
			Ports: []container.PortSummary{{IP: netip.MustParseAddr("0.0.0.0"), PrivatePort: 91, PublicPort: 8091, Type: "tcp"}},
			NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{
				"appnet": {IPAddress: netip.MustParseAddr(addr)},
			}},
		}
	}
	api := &fakeAPI{
		networks: []network.Summary{
			netSummary("aaaaaaaaaaaaffff", "bridge", "bridge", map[string]string{"com.docker.network.bridge.name": "docker0"}),
			netSummary("bbbbbbbbbbbbffff", GatewayBridge, "bridge", map[string]string{"com.docker.network.bridge.name": GatewayBridge}),
			netSummary("ov", "appnet", "overlay", nil),
		},
		containers: []container.Summary{task("t1", "10.0.1.5"), {
			ID: "c2", Names: []string{"/plain"},
			Ports:           []container.PortSummary{{IP: netip.MustParseAddr("0.0.0.0"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"}},
			NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{"bridge": {IPAddress: netip.MustParseAddr("172.17.0.2")}}},
		}},
		gateway: map[string]network.EndpointResource{
			"t1":           {IPv4Address: netip.MustParsePrefix("172.29.0.3/24")},
			"ingress-sbox": {IPv4Address: netip.MustParsePrefix("172.29.0.2/24")},
		},
	}
	w := &Watcher{API: api}
	snap, err := w.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := rules.Endpoint{Network: GatewayBridge, IPv4: netip.MustParseAddr("172.29.0.3")}
	if eps := byID(snap, "t1").Endpoints; len(eps) != 2 || eps[1] != want {
		t.Errorf("task endpoints %+v, want appnet and %+v", eps, want)
	}
	if eps := byID(snap, "c2").Endpoints; len(eps) != 1 {
		t.Errorf("plain container endpoints %+v", eps)
	}
	if api.netInspect != 1 {
		t.Errorf("%d network inspects for one listing, want 1", api.netInspect)
	}

	// A task started later is re-read alone, and its gateway with it.
	api.inspect = map[string]container.InspectResponse{"t2": {
		ID: "t2", Name: "/hov.2.t2", State: &container.State{Running: true}, Config: &container.Config{},
		NetworkSettings: &container.NetworkSettings{
			Ports:    network.PortMap{network.MustParsePort("91/tcp"): {{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: "8091"}}},
			Networks: map[string]*network.EndpointSettings{"appnet": {IPAddress: netip.MustParseAddr("10.0.1.6")}},
		},
	}}
	api.gateway["t2"] = network.EndpointResource{IPv4Address: netip.MustParsePrefix("172.29.0.4/24")}
	w.cache.note(events.Message{Type: events.ContainerEventType, Action: "start", Actor: events.Actor{ID: "t2"}})
	if snap, err = w.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	want.IPv4 = netip.MustParseAddr("172.29.0.4")
	if eps := byID(snap, "t2").Endpoints; len(eps) != 2 || eps[1] != want {
		t.Errorf("started task endpoints %+v, want appnet and %+v", eps, want)
	}
}

// Without Swarm there is no docker_gwbridge: a container on an overlay
// or macvlan network only keeps what it has, and the snapshot succeeds.
func TestNoGatewayBridge(t *testing.T) {
	api := &fakeAPI{containers: []container.Summary{{
		ID: "m1", Names: []string{"/mac"},
		Ports: []container.PortSummary{{IP: netip.MustParseAddr("0.0.0.0"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"}},
	}}}
	snap, err := (&Watcher{API: api}).Snapshot(context.Background())
	if err != nil || len(snap.Containers) != 1 || len(snap.Containers[0].Endpoints) != 0 {
		t.Fatalf("snapshot %+v, %v", snap, err)
	}
}

func byID(snap rules.Snapshot, id string) rules.Container {
	for _, c := range snap.Containers {
		if c.ID == id {
			return c
		}
	}
	return rules.Container{}
}
