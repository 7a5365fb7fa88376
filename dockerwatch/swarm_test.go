package dockerwatch

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

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

// A service published through the routing mesh is known to every node
// from the ingress network, workers too; it becomes one entry whose
// endpoint is this node's ingress sandbox, selected by service name only.
func TestIngressServices(t *testing.T) {
	ingress := netSummary("ing", "ingress", "overlay", nil)
	ingress.Ingress = true
	api := &fakeAPI{
		networks: []network.Summary{ingress,
			netSummary("bbbbbbbbbbbbffff", GatewayBridge, "bridge", map[string]string{"com.docker.network.bridge.name": GatewayBridge})},
		gateway: map[string]network.EndpointResource{IngressSandbox: {IPv4Address: netip.MustParsePrefix("172.29.0.2/24")}},
		services: map[string]network.ServiceInfo{
			"shop_web": {Ports: []string{"Target: 80, Publish: 8080", "Target: 81, Publish: 8081", "garbage"}},
			"internal": {}, // no published port: not an entry
			"":         {}, // Docker 20.10 lists the ingress endpoints as a service ""
		},
	}
	w := &Watcher{API: api}
	snap, err := w.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Containers) != 1 {
		t.Fatalf("containers %+v", snap.Containers)
	}
	c := snap.Containers[0]
	sbox := rules.Endpoint{Network: GatewayBridge, IPv4: netip.MustParseAddr("172.29.0.2")}
	if c.Name != "ingress/shop_web" || c.Labels["com.docker.swarm.service.name"] != "shop_web" ||
		len(c.Endpoints) != 1 || c.Endpoints[0] != sbox {
		t.Errorf("entry %+v", c)
	}
	any4 := netip.IPv4Unspecified()
	want := []rules.PortBinding{{HostIP: any4, HostPort: 8080, ContainerPort: 8080, Proto: "tcp"}, {HostIP: any4, HostPort: 8080, ContainerPort: 8080, Proto: "udp"},
		{HostIP: any4, HostPort: 8081, ContainerPort: 8081, Proto: "tcp"}, {HostIP: any4, HostPort: 8081, ContainerPort: 8081, Proto: "udp"}}
	if !slices.Equal(c.Ports, want) {
		t.Errorf("ports %+v, want %+v", c.Ports, want)
	}

	// A service event (managers) re-reads the services; a container's
	// create is not worth a pass.
	if w.cache.note(events.Message{Type: events.ContainerEventType, Action: events.ActionCreate, Actor: events.Actor{ID: "x"}}) {
		t.Error("a container create asked for a pass")
	}
	// A container joining another network (every start does) is no
	// reason to read the mesh again; a connect on the ingress network is.
	views := api.ingressViews
	w.cache.note(events.Message{Type: events.NetworkEventType, Action: events.ActionConnect,
		Actor: events.Actor{ID: "n1", Attributes: map[string]string{"name": "bridge", "container": "c9"}}})
	if _, err := w.Snapshot(context.Background()); err != nil || api.ingressViews != views {
		t.Errorf("a connect on bridge re-read the mesh (%d → %d views), %v", views, api.ingressViews, err)
	}
	w.cache.note(events.Message{Type: events.NetworkEventType, Action: events.ActionConnect,
		Actor: events.Actor{ID: "ing", Attributes: map[string]string{"name": "ingress", "container": "c9"}}})
	if _, err := w.Snapshot(context.Background()); err != nil || api.ingressViews != views+1 {
		t.Errorf("a connect on ingress did not re-read the mesh (%d → %d views), %v", views, api.ingressViews, err)
	}
	delete(api.services, "shop_web")
	if !w.cache.note(events.Message{Type: events.ServiceEventType, Action: events.ActionRemove, Actor: events.Actor{ID: "s"}}) {
		t.Error("a service event did not ask for a pass")
	}
	if snap, err = w.Snapshot(context.Background()); err != nil || len(snap.Containers) != 0 {
		t.Errorf("after the service's removal: %+v, %v", snap.Containers, err)
	}
}

// A node without the ingress sandbox does not serve the mesh: no entries.
func TestIngressWithoutSandbox(t *testing.T) {
	ingress := netSummary("ing", "ingress", "overlay", nil)
	ingress.Ingress = true
	api := &fakeAPI{networks: []network.Summary{ingress}, services: map[string]network.ServiceInfo{"web": {Ports: []string{"Target: 80, Publish: 8080"}}}}
	snap, err := (&Watcher{API: api}).Snapshot(context.Background())
	if err != nil || len(snap.Containers) != 0 {
		t.Fatalf("snapshot %+v, %v", snap.Containers, err)
	}
}

// On a manager the dockmoat labels of services themselves are listed (to
// be reported); on a worker the refused service API loses nothing else.
func TestServiceLabelsOnManager(t *testing.T) {
	ingress := netSummary("ing", "ingress", "overlay", nil)
	ingress.Ingress = true
	svc := swarm.Service{Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "web",
		Labels: map[string]string{"dockmoat.allow": "8080", "traefik.enable": "true"}}}}
	api := &fakeAPI{networks: []network.Summary{ingress}, swarmServices: []swarm.Service{svc, {}}}
	snap, err := (&Watcher{API: api}).Snapshot(context.Background())
	if err != nil || len(snap.ServiceLabels) != 1 || snap.ServiceLabels["web"]["dockmoat.allow"] != "8080" || len(snap.ServiceLabels["web"]) != 1 {
		t.Fatalf("manager: %+v, %v", snap.ServiceLabels, err)
	}
	if snap.Swarm == nil || !snap.Swarm.Manager || len(snap.Swarm.Peers) != 1 {
		t.Errorf("manager's place: %+v", snap.Swarm)
	}
	api.swarmServices = nil // a worker
	snap, err = (&Watcher{API: api}).Snapshot(context.Background())
	if err != nil || len(snap.ServiceLabels) != 0 || snap.Swarm == nil || snap.Swarm.Manager {
		t.Fatalf("worker: %+v %+v, %v", snap.ServiceLabels, snap.Swarm, err)
	}
}

// A mesh that cannot be read does not stop the containers' policy: the
// snapshot succeeds without mesh entries (closed), and reads again.
func TestIngressReadFailureIsNotFatal(t *testing.T) {
	ingress := netSummary("ing", "ingress", "overlay", nil)
	ingress.Ingress = true
	api := &fakeAPI{networks: []network.Summary{ingress},
		gateway:    map[string]network.EndpointResource{IngressSandbox: {IPv4Address: netip.MustParsePrefix("172.29.0.2/24")}},
		services:   map[string]network.ServiceInfo{"web": {Ports: []string{"Target: 80, Publish: 8080"}}},
		ingressErr: errors.New("unexpected answer"),
		containers: []container.Summary{{ID: "c1", Names: []string{"/web"}}}}
	w := &Watcher{API: api}
	snap, err := w.Snapshot(context.Background())
	if err != nil || len(snap.Containers) != 1 || snap.Containers[0].Name != "web" {
		t.Fatalf("snapshot %+v, %v", snap.Containers, err)
	}
	api.ingressErr = nil
	if snap, err = w.Snapshot(context.Background()); err != nil || len(snap.Containers) != 2 {
		t.Fatalf("after the mesh reads again: %+v, %v", snap.Containers, err)
	}
}

// dockmoat's own host-network containers (labelled io.dockmoat.component)
// are not host-network exposure; any other is.
func TestOwnContainersNotHostNetwork(t *testing.T) {
	host := func(id string, labels map[string]string) container.Summary {
		c := container.Summary{ID: id, Names: []string{"/" + id}, Labels: labels}
		c.HostConfig.NetworkMode = "host"
		return c
	}
	api := &fakeAPI{containers: []container.Summary{host("dockmoat", map[string]string{rules.LabelComponent: "daemon"}), host("app", nil)}}
	snap, err := (&Watcher{API: api}).Snapshot(context.Background())
	if err != nil || !slices.Equal(snap.HostNetwork, []string{"app"}) {
		t.Fatalf("host network %v, %v", snap.HostNetwork, err)
	}
}
