// Package dockerwatch is dockmoat's only contact with Docker. It turns the
// Engine API's containers and networks (and the resolvers Docker forwards
// containers' DNS to, resolv.go) into plain rules.Snapshot values and
// follows the event stream, reduced to one signal for the loop: "something
// changed, recompute". Every Snapshot is a whole state, never a delta, so
// the policy is always computed from everything.
//
// To keep a snapshot cheap it is served from a cache (cache.go): an event
// marks the container or the networks it names for re-reading, and the
// next Snapshot inspects only those and reuses the rest. That is the one
// place an event is read as "what changed", and it only picks what to
// re-read: the cache is rebuilt from a full listing on every (re)connect,
// after any failed refresh and at least every fullEvery, so a missed or
// reordered event can leave a container stale for that long at most, and
// never changes what a full read would give. Each container read gets a
// revision (rules.Container.Rev) that the policy memo uses to skip
// unchanged containers.
package dockerwatch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/rules"
)

// API is the slice of the Docker client dockmoat needs; a fake implements
// it in tests.
type API interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, containerID string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	NetworkList(ctx context.Context, options client.NetworkListOptions) (client.NetworkListResult, error)
	NetworkInspect(ctx context.Context, networkID string, options client.NetworkInspectOptions) (client.NetworkInspectResult, error)
	ServiceList(ctx context.Context, options client.ServiceListOptions) (client.ServiceListResult, error)
	ImageInspect(ctx context.Context, image string, options ...client.ImageInspectOption) (client.ImageInspectResult, error)
	// IngressView is the one read the SDK's types cannot make (Client
	// says why).
	IngressView(ctx context.Context, network string) (Ingress, error)
	Events(ctx context.Context, options client.EventsListOptions) client.EventsResult
	Ping(ctx context.Context, options client.PingOptions) (client.PingResult, error)
}

// NewClient connects the standard way (DOCKER_HOST, DOCKER_CERT_PATH…,
// default socket); the client negotiates the API version on its first
// request (the default since the moby/moby client), so one binary talks to
// Docker 20.10 (API 1.41) up to Docker 29.
func NewClient() (Client, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return Client{}, fmt.Errorf("creating Docker client: %w", err)
	}
	return Client{c}, nil
}

// Watcher reads snapshots and follows events.
type Watcher struct {
	API API
	Log logrus.FieldLogger
	// OnState, if set, hears the event stream go up (true) or down.
	OnState func(connected bool)

	cache cache
	// images caches each image's labels by ID (image.go).
	imagesMu sync.Mutex
	images   map[string]map[string]string
}

func (w *Watcher) warn(err error, msg string) {
	if w.Log != nil {
		w.Log.WithError(err).Warn(msg)
	}
}

func (w *Watcher) state(up bool) {
	if w.OnState != nil {
		w.OnState(up)
	}
}

// listing is a full List result, with the IDs of host-network containers
// and the Swarm ingress services apart.
type listing struct {
	rules.Snapshot
	hostNetIDs map[string]string
	nets       netView
	ingress    []rules.Container
	// ingressFailed: the mesh's services could not be read (no entries).
	ingressFailed bool
}

// List lists running containers and bridge networks in full. One list
// call each: the summary carries ports, labels and addresses, so the cost
// does not grow with an inspect per container.
func (w *Watcher) List(ctx context.Context) (listing, error) {
	var snap listing
	var err error
	if snap.nets, err = w.networks(ctx); err != nil {
		return snap, err
	}
	snap.Bridges, snap.NetworkBridges, snap.Direct = snap.nets.bridges, snap.nets.byName, snap.nets.direct
	list, err := w.API.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return snap, fmt.Errorf("listing containers: %w", err)
	}
	snap.hostNetIDs = map[string]string{}
	for _, c := range list.Items {
		ct := ToContainer(c)
		if err := w.splitImageLabels(ctx, &ct, c.ImageID); err != nil {
			return snap, fmt.Errorf("container %s: %w", ct.Name, err)
		}
		if c.HostConfig.NetworkMode == "host" {
			if ct.Labels[rules.LabelComponent] == "" { // dockmoat itself is no exposure
				snap.HostNetwork = append(snap.HostNetwork, ct.Name)
				snap.hostNetIDs[ct.ID] = ct.Name
			}
			continue
		}
		snap.Containers = append(snap.Containers, ct)
	}
	gw := &gateway{w: w}
	if err := gw.addTo(ctx, snap.Containers, snap.NetworkBridges); err != nil {
		return snap, err
	}
	if snap.ingress, snap.Swarm, snap.ServiceLabels, err = w.readSwarm(ctx, snap.nets.ingress, gw); err != nil {
		// Closed meanwhile (no entry, no allow); the next pass reads again.
		w.warn(err, "cannot read the Swarm routing mesh's services; its ports stay closed until they are read")
		snap.ingressFailed = true
	}
	return snap, nil
}

// netView is what the network list tells: the bridge interfaces of
// Docker's bridge networks, by network name too, and the name of Swarm's
// ingress network ("" off Swarm).
type netView struct {
	bridges []string
	byName  map[string]string
	ingress string
	direct  map[string]string // macvlan and ipvlan networks: name → driver
}

func (w *Watcher) networks(ctx context.Context) (netView, error) {
	nets, err := w.API.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return netView{}, fmt.Errorf("listing networks: %w", err)
	}
	v := netView{byName: map[string]string{}, direct: map[string]string{}}
	for _, n := range nets.Items {
		if b := BridgeName(n); b != "" {
			v.bridges = append(v.bridges, b)
			v.byName[n.Name] = b
		}
		if n.Driver == "macvlan" || n.Driver == "ipvlan" {
			v.direct[n.Name] = n.Driver
		}
		if n.Ingress {
			v.ingress = n.Name
		}
	}
	return v, nil
}

// BridgeName returns the host interface of a bridge network, or "" for
// other drivers. Docker names it docker0 for the default network, the
// com.docker.network.bridge.name option when set, else br-<12 hex of ID>.
func BridgeName(n network.Summary) string {
	if n.Driver != "bridge" {
		return ""
	}
	if name := n.Options["com.docker.network.bridge.name"]; name != "" {
		return name
	}
	if len(n.ID) < 12 {
		return ""
	}
	return "br-" + n.ID[:12]
}

// ToContainer converts the API summary into the plain snapshot.
func ToContainer(c container.Summary) rules.Container {
	out := rules.Container{ID: c.ID, Labels: c.Labels}
	if len(c.Names) > 0 {
		out.Name = strings.TrimPrefix(c.Names[0], "/")
	} else if len(c.ID) >= 12 {
		out.Name = c.ID[:12]
	}
	for _, p := range c.Ports {
		if p.PublicPort == 0 {
			continue // exposed, not published
		}
		b := rules.PortBinding{HostPort: p.PublicPort, ContainerPort: p.PrivatePort, Proto: strings.ToLower(p.Type), HostIP: p.IP.Unmap()}
		out.Ports = append(out.Ports, b)
	}
	if c.NetworkSettings != nil {
		out.Endpoints = endpoints(c.NetworkSettings.Networks)
	}
	out.SharesNetOf = sharedNet(c.HostConfig.NetworkMode)
	return out
}

// sharedNet is the container a network mode "container:<id>" names.
func sharedNet(mode string) string {
	id, _ := strings.CutPrefix(mode, "container:")
	if id == mode {
		return ""
	}
	return id
}

// endpoints keeps the networks on which the container has an address.
func endpoints(nets map[string]*network.EndpointSettings) []rules.Endpoint {
	var out []rules.Endpoint
	for name, ep := range nets {
		if ep == nil {
			continue
		}
		e := rules.Endpoint{Network: name, IPv4: ep.IPAddress.Unmap(), IPv6: ep.GlobalIPv6Address}
		if e.IPv4.IsValid() || e.IPv6.IsValid() {
			out = append(out, e)
		}
	}
	return out
}

// eventFilter keeps the events that can change a published port's rules.
// Health checks and exec produce many other container events: none is
// worth a pass that would delay the one for the start. A container's
// "create" asks for no pass either: its plan is read beside the loop
// (starting.go); Swarm services' creates do.
func eventFilter() client.Filters {
	return client.Filters{}.
		Add("type", string(events.ContainerEventType), string(events.NetworkEventType), string(events.DaemonEventType),
			string(events.ServiceEventType)).
		Add("event", "create", "start", "die", "destroy", "stop", "pause", "unpause",
			"rename", "update", "connect", "disconnect", "remove", "reload")
}

// Watch follows Docker events until ctx ends, calling changed after each
// relevant event and after every (re)connection, since events may have been
// missed while disconnected. It reconnects with capped exponential backoff.
func (w *Watcher) Watch(ctx context.Context, changed func(reason string)) {
	backoff := 250 * time.Millisecond
	const maxBackoff = 30 * time.Second
	for ctx.Err() == nil {
		err := w.follow(ctx, changed, func() {
			backoff = 250 * time.Millisecond
			w.state(true)
		})
		if ctx.Err() != nil {
			return
		}
		w.state(false)
		w.Log.WithError(err).WithField("retry_in", backoff.String()).Warn("Docker event stream lost; installed rules stay as they are")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (w *Watcher) follow(ctx context.Context, changed func(string), connected func()) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := w.API.Ping(pctx, client.PingOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("pinging Docker: %w", err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	stream := w.API.Events(sctx, client.EventsListOptions{Filters: eventFilter()})
	msgs, errs := stream.Messages, stream.Err
	// Events may have been missed while disconnected: list in full next.
	w.cache.invalidate()
	connected()
	// Subscribed first, then resync: nothing between the two is lost.
	changed("docker connected")
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			if err == nil {
				return fmt.Errorf("event stream closed")
			}
			return fmt.Errorf("event stream: %w", err)
		case m, ok := <-msgs:
			if !ok {
				return fmt.Errorf("event stream closed")
			}
			pass := w.cache.note(m)
			if m.Type == events.ContainerEventType && (m.Action == events.ActionCreate || m.Action == events.ActionRename) {
				go w.recordPlan(sctx, m.Actor.ID, w.cache.planTicket(m.Actor.ID))
			}
			if pass {
				changed(string(m.Type) + " " + string(m.Action))
			}
		}
	}
}
