package dockerwatch

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/rules"
)

func netSummary(id, name, driver string, opts map[string]string) network.Summary {
	return network.Summary{Network: network.Network{ID: id, Name: name, Driver: driver, Options: opts}}
}

type fakeAPI struct {
	mu           sync.Mutex
	lists        int
	inspects     int
	inspect      map[string]container.InspectResponse
	containers   []container.Summary
	networks     []network.Summary
	gateway      map[string]network.EndpointResource // docker_gwbridge's endpoints; nil: no such network
	services     map[string]network.ServiceInfo      // the ingress network's, by service name
	netInspect   int
	ingressErr   error
	ingressViews int
	// swarmServices: the manager's services; nil: not a manager.
	swarmServices []swarm.Service
	pingErr       error
	streams       []chan events.Message // one per Events call, in order
	errs          []chan error
	filters       []string
	// images: labels by image ID; an ID not here is not found (nil: every
	// image exists, without labels).
	images        map[string]map[string]string
	imageInspects int
	// netContainers: each network's endpoints by container ID, as a
	// network inspect gives them (by network ID).
	netContainers map[string]network.Inspect
}

func (f *fakeAPI) ImageInspect(_ context.Context, id string, _ ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	f.imageInspects++
	labels, ok := f.images[id]
	if !ok && f.images != nil {
		return client.ImageInspectResult{}, errdefs.ErrNotFound
	}
	var res client.ImageInspectResult
	res.Config = &dockerspec.DockerOCIImageConfig{}
	res.Config.Labels = labels
	return res, nil
}

func (f *fakeAPI) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	f.lists++
	return client.ContainerListResult{Items: f.containers}, nil
}
func (f *fakeAPI) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	f.inspects++
	if r, ok := f.inspect[id]; ok {
		return client.ContainerInspectResult{Container: r}, nil
	}
	return client.ContainerInspectResult{}, errdefs.ErrNotFound
}
func (f *fakeAPI) NetworkList(context.Context, client.NetworkListOptions) (client.NetworkListResult, error) {
	return client.NetworkListResult{Items: f.networks}, nil
}
func (f *fakeAPI) NetworkInspect(_ context.Context, id string, _ client.NetworkInspectOptions) (client.NetworkInspectResult, error) {
	f.netInspect++
	switch {
	case id == GatewayBridge && f.gateway != nil:
		return client.NetworkInspectResult{Network: network.Inspect{Containers: f.gateway}}, nil
	}
	if n, ok := f.netContainers[id]; ok {
		return client.NetworkInspectResult{Network: n}, nil
	}
	return client.NetworkInspectResult{}, errdefs.ErrNotFound
}
func (f *fakeAPI) IngressView(_ context.Context, id string) (Ingress, error) {
	if id != "ingress" {
		return Ingress{}, errdefs.ErrNotFound
	}
	f.ingressViews++
	if f.ingressErr != nil {
		return Ingress{}, f.ingressErr
	}
	out := Ingress{Services: map[string][]string{}, Peers: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}
	for name, svc := range f.services {
		out.Services[name] = svc.Ports
	}
	return out, nil
}
func (f *fakeAPI) ServiceList(context.Context, client.ServiceListOptions) (client.ServiceListResult, error) {
	if f.swarmServices == nil {
		return client.ServiceListResult{}, errors.New("This node is not a swarm manager.")
	}
	return client.ServiceListResult{Items: f.swarmServices}, nil
}
func (f *fakeAPI) Ping(context.Context, client.PingOptions) (client.PingResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return client.PingResult{}, f.pingErr
}
func (f *fakeAPI) Events(_ context.Context, o client.EventsListOptions) client.EventsResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, e := make(chan events.Message, 10), make(chan error, 1)
	f.streams, f.errs = append(f.streams, m), append(f.errs, e)
	for typ := range o.Filters["type"] {
		f.filters = append(f.filters, typ)
	}
	return client.EventsResult{Messages: m, Err: e}
}

func TestSnapshot(t *testing.T) {
	api := &fakeAPI{
		networks: []network.Summary{
			netSummary("aaaaaaaaaaaaffff", "", "bridge", map[string]string{"com.docker.network.bridge.name": "docker0"}),
			netSummary("0123456789abcdef", "", "bridge", nil),
			netSummary("host", "", "host", nil),
			netSummary("ov", "", "overlay", nil),
		},
		containers: []container.Summary{{
			ID: "c1", Names: []string{"/web"}, Labels: map[string]string{"dockmoat.allow": "80"},
			Ports: []container.PortSummary{
				{IP: netip.MustParseAddr("0.0.0.0"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"},
				{IP: netip.MustParseAddr("::"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"},
				{PrivatePort: 9000, Type: "tcp"}, // exposed only
				{IP: netip.MustParseAddr("127.0.0.1"), PrivatePort: 53, PublicPort: 5353, Type: "UDP"},
			},
			NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{
				"bridge": {IPAddress: netip.MustParseAddr("172.17.0.2"), GlobalIPv6Address: netip.MustParseAddr("fd00::2")},
				"none":   {},
				"nil":    nil,
			}},
		}, {ID: "0123456789abcdef0123", NetworkSettings: nil}},
	}
	w := &Watcher{API: api}
	snap, err := w.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Bridges) != 2 || snap.Bridges[0] != "docker0" || snap.Bridges[1] != "br-0123456789ab" {
		t.Errorf("bridges %v", snap.Bridges)
	}
	// The cache does not promise an order (policy.Build sorts).
	i := slices.IndexFunc(snap.Containers, func(c rules.Container) bool { return c.Name == "web" })
	if i < 0 || len(snap.Containers) != 2 {
		t.Fatalf("containers %+v", snap.Containers)
	}
	c := snap.Containers[i]
	if len(c.Ports) != 3 {
		t.Fatalf("container %+v", c)
	}
	if c.Ports[2].Proto != "udp" || c.Ports[2].HostIP != netip.MustParseAddr("127.0.0.1") || c.Ports[1].HostIP != netip.MustParseAddr("::") {
		t.Errorf("ports %+v", c.Ports)
	}
	if len(c.Endpoints) != 1 || c.Endpoints[0].IPv4.String() != "172.17.0.2" || c.Endpoints[0].IPv6.String() != "fd00::2" {
		t.Errorf("endpoints %+v", c.Endpoints)
	}
	if u := snap.Containers[1-i]; u.Name != "0123456789ab" {
		t.Errorf("unnamed container: %+v", u)
	}
}

func TestWatchResyncsOnConnectAndReconnects(t *testing.T) {
	api := &fakeAPI{}
	log, _ := test.NewNullLogger()
	w := &Watcher{API: api, Log: log}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reasons := make(chan string, 100)
	go w.Watch(ctx, func(r string) { reasons <- r })

	expect := func(want string) {
		t.Helper()
		select {
		case r := <-reasons:
			if r != want {
				t.Fatalf("got change %q, want %q", r, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("no change %q", want)
		}
	}
	expect("docker connected")
	api.mu.Lock()
	api.streams[0] <- events.Message{Type: events.ContainerEventType, Action: events.ActionStart}
	api.mu.Unlock()
	expect("container start")
	// The stream breaks (dockerd restart): reconnect, and resync on it.
	api.mu.Lock()
	api.errs[0] <- errors.New("unexpected EOF")
	api.mu.Unlock()
	expect("docker connected")
	api.mu.Lock()
	n := len(api.streams)
	api.mu.Unlock()
	if n != 2 {
		t.Errorf("want 2 subscriptions, got %d", n)
	}
}

func TestWatchBacksOffWhileDockerIsDown(t *testing.T) {
	api := &fakeAPI{pingErr: errors.New("connection refused")}
	log, hook := test.NewNullLogger()
	w := &Watcher{API: api, Log: log}
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	changed := 0
	w.Watch(ctx, func(string) { changed++ })
	if changed != 0 {
		t.Error("no resync may be asked while Docker is down")
	}
	// 250ms, 500ms, …: about 3 attempts in 1.2s, not a busy loop.
	if n := len(hook.AllEntries()); n < 2 || n > 4 {
		t.Errorf("want 2-4 reconnect attempts in 1.2s, got %d", n)
	}
}

func TestCacheInspectsOnlyWhatEventsNamed(t *testing.T) {
	api := &fakeAPI{networks: []network.Summary{netSummary("n", "bridge", "bridge", map[string]string{"com.docker.network.bridge.name": "docker0"})},
		containers: []container.Summary{{ID: "old", Names: []string{"/old"}, NetworkSettings: &container.NetworkSettingsSummary{}}}}
	w := &Watcher{API: api}
	ctx := context.Background()
	first, err := w.Snapshot(ctx)
	if err != nil || len(first.Containers) != 1 || api.lists != 1 {
		t.Fatalf("first snapshot: %+v %v lists=%d", first, err, api.lists)
	}
	ns := &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"bridge": {IPAddress: netip.MustParseAddr("172.17.0.9")}}}
	ns.Ports = network.PortMap{network.MustParsePort("80/tcp"): {
		{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: "8080"}, {HostIP: netip.MustParseAddr("::"), HostPort: "8080"}}}
	api.inspect = map[string]container.InspectResponse{"new": {
		ID: "new", Name: "/new", State: &container.State{Running: true}, HostConfig: &container.HostConfig{},
		Config:          &container.Config{Labels: map[string]string{"dockmoat.allow": "8080"}},
		NetworkSettings: ns,
	}}
	w.cache.note(events.Message{Type: events.ContainerEventType, Action: events.ActionStart, Actor: events.Actor{ID: "new"}})
	snap, err := w.Snapshot(ctx)
	if err != nil || api.lists != 1 || api.inspects != 1 || len(snap.Containers) != 2 {
		t.Fatalf("after start: %+v %v lists=%d inspects=%d", snap.Containers, err, api.lists, api.inspects)
	}
	revs := map[string]uint64{}
	for _, c := range snap.Containers {
		revs[c.ID] = c.Rev
	}
	// Revisions: the untouched container keeps its own, the inspected one
	// gets a new one, and inspecting it again gives another.
	if revs["old"] != first.Containers[0].Rev || revs["old"] == 0 || revs["new"] == 0 || revs["new"] == revs["old"] {
		t.Errorf("revisions: first %d, then %v", first.Containers[0].Rev, revs)
	}
	w.cache.note(events.Message{Type: events.ContainerEventType, Action: events.ActionUpdate, Actor: events.Actor{ID: "new"}})
	if again, _ := w.Snapshot(ctx); len(again.Containers) != 2 {
		t.Fatalf("after update: %+v", again.Containers)
	} else {
		for _, c := range again.Containers {
			if (c.ID == "new") == (c.Rev == revs[c.ID]) {
				t.Errorf("after re-inspecting new: %s has revision %d, was %d", c.ID, c.Rev, revs[c.ID])
			}
		}
	}
	for _, c := range snap.Containers {
		if c.ID == "new" && (c.Name != "new" || len(c.Ports) != 2 || c.Ports[0].HostPort != 8080 || c.Endpoints[0].IPv4.String() != "172.17.0.9") {
			t.Errorf("from inspect: %+v", c)
		}
	}
	// Gone: inspect says not found.
	delete(api.inspect, "new")
	w.cache.note(events.Message{Type: events.ContainerEventType, Action: events.ActionDestroy, Actor: events.Actor{ID: "new"}})
	if snap, _ := w.Snapshot(ctx); len(snap.Containers) != 1 || api.lists != 1 {
		t.Errorf("after destroy: %+v lists=%d", snap.Containers, api.lists)
	}
	// A reconnect (or a daemon event) forces a full list.
	w.cache.invalidate()
	if _, err := w.Snapshot(ctx); err != nil || api.lists != 2 {
		t.Errorf("invalidate did not list again: lists=%d", api.lists)
	}
}
