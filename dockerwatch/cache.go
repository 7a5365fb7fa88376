package dockerwatch

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/rules"
)

// cache keeps the last full listing and the IDs events said changed, so
// that a pass after an event inspects one container instead of listing
// them all: a Docker 29 list costs 40-130 ms with 20 containers, an
// inspect a few. The full listing stays the floor: on every (re)connect,
// whenever a refresh fails, and when it is older than fullEvery.
type cache struct {
	mu         sync.Mutex
	valid      bool
	listedAt   time.Time
	containers map[string]rules.Container
	hostNet    map[string]string // id → name
	bridges    []string
	netBridges map[string]string
	direct     map[string]string
	dirty      map[string]bool // container IDs to re-inspect
	netsDirty  bool
	// plans are created containers' labels and bindings, read before
	// their start; connecting the networks starting ones were connected
	// to (starting.go).
	plans      map[string]startPlan
	planReads  map[string]uint64
	connecting map[string][]string
	// The Swarm ingress network's name and its services as containers
	// (swarm.go), re-read when a network or service event says so.
	ingressNet    string
	ingress       []rules.Container
	serviceLabels map[string]map[string]string
	swarm         *rules.SwarmNode
	ingressDirty  bool
	// dns are the host's resolvers (resolv.go), read at each full listing.
	dns []netip.Addr
	// links is the host's interfaces as dumped at the start of the last
	// Snapshot: containers read then are matched to their veths.
	links hostLinks
	// rev numbers every container read from Docker (rules.Container.Rev):
	// entries the cache hands out again unchanged keep theirs, so the
	// reconciler does not compare 10,000 label maps to find one change.
	rev uint64
}

// stamp gives a container just read from Docker a new revision.
func (c *cache) stamp(ct rules.Container) rules.Container {
	c.rev++
	ct.Rev = c.rev
	return ct
}

// fullEvery bounds how stale the cache may get if an event were missed.
const fullEvery = 30 * time.Second

func (c *cache) invalidate() {
	c.mu.Lock()
	c.valid = false
	c.mu.Unlock()
}

// note records what an event may have changed, and reports whether it
// is worth a pass.
func (c *cache) note(m events.Message) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirty == nil {
		c.dirty = map[string]bool{}
	}
	switch m.Type {
	case events.ContainerEventType:
		switch m.Action {
		case events.ActionCreate:
			return false // its plan is read beside the loop (recordPlan)
		case events.ActionDestroy, events.ActionRename:
			// A renamed container's plan is read again (recordPlan): a
			// policy by name must never meet the old name.
			delete(c.plans, m.Actor.ID)
			if m.Action == events.ActionDestroy {
				delete(c.planReads, m.Actor.ID)
			}
		}
		c.dirty[m.Actor.ID] = true
	case events.NetworkEventType:
		c.netsDirty = true
		// Every container start connects a network; only the mesh's own
		// networks (or any, off Swarm, where reading it costs nothing)
		// are worth re-reading the mesh for.
		if name := m.Actor.Attributes["name"]; c.ingressNet == "" || name == c.ingressNet || name == GatewayBridge {
			c.ingressDirty = true
		}
		if id := m.Actor.Attributes["container"]; id != "" {
			if m.Action != events.ActionConnect || !c.noteConnect(id, m.Actor.ID) {
				c.dirty[id] = true
			}
		}
	case events.ServiceEventType: // managers only: workers list every fullEvery
		c.ingressDirty = true
	default:
		c.valid = false // daemon reload and anything else: list again
	}
	return true
}

// Snapshot implements the reconciler's Source.
func (w *Watcher) Snapshot(ctx context.Context) (rules.Snapshot, error) {
	c := &w.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	// The host's interfaces before Docker's networks: a bridge Docker
	// creates in between is then either in both or caught by the rules'
	// catch-all, never taken for the host's (rules.ForeignBridges).
	links, lerr := readLinks()
	if lerr != nil {
		w.warn(lerr, "cannot list the host's interfaces; no br-* bridge is taken for the host's own")
	}
	c.links = links
	if !c.valid || time.Since(c.listedAt) > fullEvery {
		if err := w.fullList(ctx); err != nil {
			return rules.Snapshot{}, err
		}
	} else if err := w.refresh(ctx); err != nil {
		// Whatever went wrong, a full listing is the answer.
		if err := w.fullList(ctx); err != nil {
			return rules.Snapshot{}, err
		}
	}
	snap := c.snapshot()
	snap.Links = links.names
	return snap, nil
}

func (c *cache) snapshot() rules.Snapshot {
	snap := rules.Snapshot{Bridges: append([]string(nil), c.bridges...), NetworkBridges: c.netBridges, Direct: c.direct}
	for _, ct := range c.containers {
		snap.Containers = append(snap.Containers, ct)
	}
	snap.Containers = append(snap.Containers, c.ingress...)
	snap.ServiceLabels, snap.Swarm, snap.DNS = c.serviceLabels, c.swarm, c.dns
	for _, name := range c.hostNet {
		snap.HostNetwork = append(snap.HostNetwork, name)
	}
	return snap
}

// fullList replaces the cache with a complete listing (c.mu held).
func (w *Watcher) fullList(ctx context.Context) error {
	c := &w.cache
	snap, err := w.List(ctx)
	if err != nil {
		c.valid = false
		return err
	}
	old := c.containers
	c.containers, c.hostNet = map[string]rules.Container{}, map[string]string{}
	for _, ct := range snap.Containers {
		// A listing does not tell the namespace: kept from the last read,
		// asked once for a container never read (a restart comes with
		// events, which re-inspect it).
		if ct.Sandbox = old[ct.ID].Sandbox; ct.Sandbox == "" && len(ct.Endpoints) > 0 {
			ct.Sandbox = w.sandbox(ctx, ct.ID)
		}
		c.links.assign(&ct, snap.NetworkBridges)
		c.containers[ct.ID] = c.stamp(ct)
	}
	for id, name := range snap.hostNetIDs {
		c.hostNet[id] = name
	}
	c.bridges, c.netBridges, c.direct = snap.Bridges, snap.NetworkBridges, snap.Direct
	c.ingressNet, c.ingress, c.serviceLabels, c.swarm = snap.nets.ingress, nil, snap.ServiceLabels, snap.Swarm
	for _, ct := range snap.ingress {
		c.ingress = append(c.ingress, c.stamp(ct))
	}
	c.dirty, c.netsDirty, c.ingressDirty = map[string]bool{}, false, snap.ingressFailed
	c.valid, c.listedAt = true, time.Now()
	if dns, err := HostResolvers(""); err != nil {
		// Kept as last read: without them egress-deny containers lose
		// DNS, never gain anything.
		w.warn(err, "cannot read the host's DNS resolvers; egress keeps the last read")
	} else {
		c.dns = dns
	}
	return nil
}

// refresh re-inspects the containers events named (c.mu held).
func (w *Watcher) refresh(ctx context.Context) error {
	c := &w.cache
	if c.netsDirty {
		v, err := w.networks(ctx)
		if err != nil {
			return err
		}
		c.bridges, c.netBridges, c.direct, c.ingressNet, c.netsDirty = v.bridges, v.byName, v.direct, v.ingress, false
	}
	w.starting(ctx)
	var read []rules.Container
	for id := range c.dirty {
		res, err := w.API.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		info := res.Container
		switch {
		case errdefs.IsNotFound(err):
			w.forget(id)
		case err != nil:
			return fmt.Errorf("inspecting container %s: %w", id, err)
		case info.State == nil || !info.State.Running:
			w.forget(id)
		default:
			ct := FromInspect(info)
			if err := w.splitImageLabels(ctx, &ct, info.Image); err != nil {
				return fmt.Errorf("container %s: %w", ct.Name, err)
			}
			c.keepPlan(info.ID, ct, info.HostConfig) // for its next start
			c.links.assign(&ct, c.netBridges)
			ct = c.stamp(ct)
			w.forget(id)
			if info.HostConfig != nil && info.HostConfig.NetworkMode == "host" {
				if ct.Labels[rules.LabelComponent] == "" {
					c.hostNet[ct.ID] = ct.Name
				}
			} else {
				read = append(read, ct)
			}
		}
	}
	// Swarm tasks on overlay networks only: their gateway endpoints are
	// read before anything is kept, so a failure leaves the IDs dirty.
	gw := &gateway{w: w}
	if err := gw.addTo(ctx, read, c.netBridges); err != nil {
		return err
	}
	for _, ct := range read {
		c.containers[ct.ID] = ct
	}
	clear(c.dirty)
	if c.ingressDirty {
		mesh, node, labels, err := w.readSwarm(ctx, c.ingressNet, gw)
		c.swarm, c.serviceLabels = node, labels
		if err != nil {
			// The containers' policy must not wait for the mesh's: the
			// entries read last stay, and the next pass reads again.
			w.warn(err, "cannot read the Swarm routing mesh's services; keeping the last read")
			return nil
		}
		c.ingress = c.ingress[:0]
		for _, ct := range mesh {
			c.ingress = append(c.ingress, c.stamp(ct))
		}
		c.ingressDirty = false
	}
	return nil
}

// forget drops a container by full ID or by the ID prefix an event gave.
func (w *Watcher) forget(id string) {
	c := &w.cache
	for k := range c.containers {
		if strings.HasPrefix(k, id) {
			delete(c.containers, k)
		}
	}
	for k := range c.hostNet {
		if strings.HasPrefix(k, id) {
			delete(c.hostNet, k)
		}
	}
}

// FromInspect converts an inspect response into the plain snapshot, the
// same way ToContainer does for a list entry.
func FromInspect(info container.InspectResponse) rules.Container {
	out := rules.Container{ID: info.ID, Name: strings.TrimPrefix(info.Name, "/")}
	if info.Config != nil {
		out.Labels = info.Config.Labels
	}
	if info.HostConfig != nil {
		out.SharesNetOf = sharedNet(string(info.HostConfig.NetworkMode))
	}
	if info.NetworkSettings == nil {
		return out
	}
	for port, bindings := range info.NetworkSettings.Ports {
		for _, b := range bindings {
			hp, err := strconv.ParseUint(b.HostPort, 10, 16)
			if err != nil || hp == 0 {
				continue
			}
			pb := rules.PortBinding{HostPort: uint16(hp), ContainerPort: port.Num(), Proto: strings.ToLower(string(port.Proto())), HostIP: b.HostIP.Unmap()}
			out.Ports = append(out.Ports, pb)
		}
	}
	out.Endpoints = endpoints(info.NetworkSettings.Networks)
	out.Sandbox = info.NetworkSettings.SandboxKey
	return out
}

// sandbox asks Docker for a container's network namespace, which its
// listing does not give ("" when it cannot tell: its egress is then not
// bound to its interface, and rules says so).
func (w *Watcher) sandbox(ctx context.Context, id string) string {
	res, err := w.API.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil || res.Container.NetworkSettings == nil {
		return ""
	}
	return res.Container.NetworkSettings.SandboxKey
}
