package dockerwatch

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"

	"github.com/dockmoat/dockmoat/rules"
)

// startingAPI is Docker with one network ("netid", named bridge) and a
// created container "web" that publishes 8080/tcp on every address,
// 5353/udp on 127.0.0.1 and 81/tcp on a random port, labelled open, with
// a dockmoat label from its image.
func startingAPI() *fakeAPI {
	hc := &container.HostConfig{PortBindings: network.PortMap{
		network.MustParsePort("80/tcp"): {{HostPort: "8080"}},
		network.MustParsePort("53/udp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "5353"}},
		network.MustParsePort("81/tcp"): {{HostPort: ""}},
	}}
	return &fakeAPI{
		networks: []network.Summary{netSummary("netid", "bridge", "bridge", map[string]string{"com.docker.network.bridge.name": "docker0"})},
		images:   map[string]map[string]string{"img": {"dockmoat.allow.81": "*"}},
		inspect: map[string]container.InspectResponse{"web": {ID: "web", Name: "/web", Image: "img", HostConfig: hc,
			State:  &container.State{Status: "created"},
			Config: &container.Config{Labels: map[string]string{"dockmoat.allow": "8080", "dockmoat.allow.81": "*"}}}},
		netContainers: map[string]network.Inspect{"netid": {Network: network.Network{Name: "bridge"}, Containers: map[string]network.EndpointResource{
			"web": {IPv4Address: netip.MustParsePrefix("172.17.0.7/16")}}}},
	}
}

func entry(snap rules.Snapshot, id string) (rules.Container, bool) {
	for _, c := range snap.Containers {
		if c.ID == id {
			return c, true
		}
	}
	return rules.Container{}, false
}

// TestStartingEntry: a container read at its creation gets its entry at
// the network connect, from the network's view of its address, without
// an inspect (which would wait for the start); the start's inspect
// replaces it.
func TestStartingEntry(t *testing.T) {
	api := startingAPI()
	w := &Watcher{API: api}
	ctx := context.Background()
	if _, err := w.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	w.recordPlan(ctx, "web", w.cache.planTicket("web"))
	inspects := api.inspects
	w.cache.note(events.Message{Type: events.NetworkEventType, Action: events.ActionConnect, Actor: events.Actor{ID: "netid", Attributes: map[string]string{"container": "web", "name": "bridge"}}})
	snap, err := w.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := entry(snap, "web")
	if !ok || !c.Starting || api.inspects != inspects {
		t.Fatalf("at connect: %+v (found %v), %d inspect(s)", c, ok, api.inspects-inspects)
	}
	want := []rules.PortBinding{
		{HostIP: netip.IPv4Unspecified(), HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
		{HostIP: netip.IPv6Unspecified(), HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, ContainerPort: 53, Proto: "udp"},
	}
	got := slices.Clone(c.Ports)
	slices.SortFunc(got, func(a, b rules.PortBinding) int { return rules.ComparePorts(a, b) })
	slices.SortFunc(want, func(a, b rules.PortBinding) int { return rules.ComparePorts(a, b) })
	if !slices.Equal(got, want) {
		t.Errorf("bindings: %+v, want %+v (the random one is known after the start)", c.Ports, want)
	}
	if len(c.Endpoints) != 1 || c.Endpoints[0].IPv4 != netip.MustParseAddr("172.17.0.7") || c.Endpoints[0].Network != "bridge" {
		t.Errorf("endpoints: %+v", c.Endpoints)
	}
	if _, fromImage := c.Labels["dockmoat.allow.81"]; fromImage || c.ImageLabels["dockmoat.allow.81"] != "*" {
		t.Errorf("the image's label must stay apart: labels %v, image labels %v", c.Labels, c.ImageLabels)
	}
	// Started: the inspect gives what Docker published.
	r := api.inspect["web"]
	r.State = &container.State{Running: true, Status: "running"}
	r.NetworkSettings = &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"bridge": {IPAddress: netip.MustParseAddr("172.17.0.7")}}}
	r.NetworkSettings.Ports = network.PortMap{network.MustParsePort("80/tcp"): {{HostIP: netip.IPv4Unspecified(), HostPort: "8080"}}}
	api.inspect["web"] = r
	w.cache.note(events.Message{Type: events.ContainerEventType, Action: events.ActionStart, Actor: events.Actor{ID: "web"}})
	snap, _ = w.Snapshot(ctx)
	if c, ok := entry(snap, "web"); !ok || c.Starting || len(c.Ports) != 1 {
		t.Errorf("after the start: %+v", c)
	}
}

// TestStartingEntryFailedStart: a start that fails after the connect
// (Docker disconnects the container) leaves no entry; nor does a full
// listing, which keeps running containers only.
func TestStartingEntryFailedStart(t *testing.T) {
	for _, how := range []string{"disconnect", "full listing"} {
		t.Run(how, func(t *testing.T) {
			api := startingAPI()
			w := &Watcher{API: api}
			ctx := context.Background()
			w.Snapshot(ctx)
			w.recordPlan(ctx, "web", w.cache.planTicket("web"))
			w.cache.note(events.Message{Type: events.NetworkEventType, Action: events.ActionConnect, Actor: events.Actor{ID: "netid", Attributes: map[string]string{"container": "web"}}})
			if snap, _ := w.Snapshot(ctx); len(snap.Containers) != 1 {
				t.Fatalf("no starting entry: %+v", snap.Containers)
			}
			r := api.inspect["web"]
			r.State = &container.State{Status: "exited", ExitCode: 127}
			api.inspect["web"] = r
			if how == "disconnect" {
				w.cache.note(events.Message{Type: events.NetworkEventType, Action: events.ActionDisconnect, Actor: events.Actor{ID: "netid", Attributes: map[string]string{"container": "web"}}})
			} else {
				w.cache.invalidate()
			}
			if snap, _ := w.Snapshot(ctx); len(snap.Containers) != 0 {
				t.Errorf("after the failed start: %+v", snap.Containers)
			}
		})
	}
}

// TestStartingEntryFallsBack: without a plan (created before dockmoat
// ran, or the start took the lock first), or when the network does not
// name the container, the connect re-reads it by inspect, as before.
func TestStartingEntryFallsBack(t *testing.T) {
	for _, how := range []string{"no plan", "not in the network"} {
		t.Run(how, func(t *testing.T) {
			api := startingAPI()
			w := &Watcher{API: api}
			ctx := context.Background()
			w.Snapshot(ctx)
			if how == "no plan" {
				api.inspect["web"] = container.InspectResponse{ID: "web", Name: "/web", State: &container.State{Status: "created"}}
			} else {
				w.recordPlan(ctx, "web", w.cache.planTicket("web"))
				api.netContainers["netid"] = network.Inspect{}
			}
			inspects := api.inspects
			w.cache.note(events.Message{Type: events.NetworkEventType, Action: events.ActionConnect, Actor: events.Actor{ID: "netid", Attributes: map[string]string{"container": "web"}}})
			snap, _ := w.Snapshot(ctx)
			if len(snap.Containers) != 0 || api.inspects != inspects+1 {
				t.Errorf("want an inspect and no entry: %+v, %d inspect(s)", snap.Containers, api.inspects-inspects)
			}
		})
	}
}

// TestStartingEntryTwoNetworks: a container connected to two networks
// while starting has both addresses, whether the connects come in one
// pass or two; a rename drops its plan, so a policy by name never meets
// the old name (the next connect re-reads it by inspect).
func TestStartingEntryTwoNetworks(t *testing.T) {
	for _, passes := range []int{1, 2} {
		api := startingAPI()
		api.netContainers["net2"] = network.Inspect{Network: network.Network{Name: "backend"}, Containers: map[string]network.EndpointResource{
			"web": {IPv4Address: netip.MustParsePrefix("172.18.0.7/16")}}}
		w := &Watcher{API: api}
		ctx := context.Background()
		w.Snapshot(ctx)
		w.recordPlan(ctx, "web", w.cache.planTicket("web"))
		for i, n := range []string{"netid", "net2"} {
			w.cache.note(events.Message{Type: events.NetworkEventType, Action: events.ActionConnect, Actor: events.Actor{ID: n, Attributes: map[string]string{"container": "web"}}})
			if passes == 2 || i == 1 {
				w.Snapshot(ctx)
			}
		}
		snap, _ := w.Snapshot(ctx)
		if c, _ := entry(snap, "web"); !c.Starting || len(c.Endpoints) != 2 {
			t.Errorf("%d pass(es): %+v", passes, c)
		}
	}
	api := startingAPI()
	w := &Watcher{API: api}
	ctx := context.Background()
	w.Snapshot(ctx)
	w.recordPlan(ctx, "web", w.cache.planTicket("web"))
	w.cache.note(events.Message{Type: events.ContainerEventType, Action: events.ActionRename, Actor: events.Actor{ID: "web"}})
	w.Snapshot(ctx)
	w.cache.note(events.Message{Type: events.NetworkEventType, Action: events.ActionConnect, Actor: events.Actor{ID: "netid", Attributes: map[string]string{"container": "web"}}})
	if snap, _ := w.Snapshot(ctx); len(snap.Containers) != 0 {
		t.Errorf("renamed, its plan not read again: %+v", snap.Containers)
	}
}

// TestStartingPlanLatestRead: of two reads of a plan (after the create,
// then after a rename), the later one is kept even if the earlier ends
// last.
func TestStartingPlanLatestRead(t *testing.T) {
	api := startingAPI()
	w := &Watcher{API: api}
	ctx := context.Background()
	w.Snapshot(ctx)
	afterCreate, afterRename := w.cache.planTicket("web"), w.cache.planTicket("web")
	r := api.inspect["web"]
	r.Name = "/renamed"
	api.inspect["web"] = r
	w.recordPlan(ctx, "web", afterRename)
	r.Name = "/web"
	api.inspect["web"] = r
	w.recordPlan(ctx, "web", afterCreate) // ends last, read first
	w.cache.note(events.Message{Type: events.NetworkEventType, Action: events.ActionConnect, Actor: events.Actor{ID: "netid", Attributes: map[string]string{"container": "web"}}})
	snap, _ := w.Snapshot(ctx)
	if c, _ := entry(snap, "web"); c.Name != "renamed" {
		t.Errorf("entry named %q, want the name after the rename", c.Name)
	}
}
