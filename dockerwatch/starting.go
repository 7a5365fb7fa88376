package dockerwatch

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/rules"
)

// A container's entry before its start completes: the allow in place
// before its process can accept a connection.
//
// Docker connects a starting container to its networks (the "network
// connect" event, its address assigned) before it runs the process:
// measured, 30-40 ms before ContainerStart returns on Docker 28 and 29,
// about 450 ms on 20.10. Throughout the start Docker holds the container's
// lock, so inspecting it then waits until the start is over; a network
// inspect answers at once. What the start will publish (labels and port
// bindings) is read when the container is created, before the start takes
// that lock, and kept as its plan; at the connect, the network names the
// address, and plan and address make an entry marked Starting. The start
// event's inspect then replaces it with what Docker really published.
//
// Nothing is opened that the container would not get at its start: the
// same labels (image labels apart, as ever), only the bindings with an
// explicit host port (a random one is known after the start), only on
// the address Docker gave this container. If the start fails, Docker
// disconnects it, and the inspect that follows drops the entry; a full
// listing (every 30 s, and after any reconnect to Docker) keeps running
// containers only, so an entry whose start never ended lasts that long at
// most, and its address stays the container's until Docker releases it,
// which it announces. Where the plan was not read in time (the start
// already held the lock), the entry comes from the start's inspect, as
// before.

// startPlan is what a container's start will publish, as created.
type startPlan struct {
	name        string
	labels      map[string]string
	imageLabels map[string]string
	ports       []rules.PortBinding
}

// planTicket numbers a read of a container's plan, so that only the
// latest is kept (a read after a create may end after the read after a
// rename).
func (c *cache) planTicket(id string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.planReads == nil {
		c.planReads = map[string]uint64{}
	}
	c.planReads[id]++
	return c.planReads[id]
}

// recordPlan reads a created (or renamed) container's plan. It runs
// beside the event loop: if the start already holds the container's lock,
// it waits for the start and records the plan for the next start (a
// restart). ticket is planTicket's.
func (w *Watcher) recordPlan(ctx context.Context, id string, ticket uint64) {
	res, err := w.API.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return
	}
	info := res.Container
	ct := FromInspect(info)
	if err := w.splitImageLabels(ctx, &ct, info.Image); err != nil {
		return // no plan: its entry comes at the start, as before
	}
	c := &w.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.planReads[id] != ticket {
		return // a later read (after a rename) is the one to keep
	}
	c.keepPlan(info.ID, ct, info.HostConfig)
	if w.Log != nil {
		w.Log.WithField("container", ct.Name).Debug("read at its creation: labels and bindings for its start")
	}
}

// keepPlan stores a container's plan from an inspect (c.mu held).
func (c *cache) keepPlan(id string, ct rules.Container, hc *container.HostConfig) {
	if hc == nil || hc.NetworkMode.IsHost() || hc.NetworkMode.IsNone() || hc.NetworkMode.IsContainer() {
		return
	}
	p := startPlan{name: ct.Name, labels: ct.Labels, imageLabels: ct.ImageLabels}
	for port, bindings := range hc.PortBindings {
		for _, b := range bindings {
			hp, err := strconv.ParseUint(b.HostPort, 10, 16)
			if err != nil || hp == 0 {
				continue // random or a range: known after the start
			}
			pb := rules.PortBinding{HostIP: b.HostIP.Unmap(), HostPort: uint16(hp), ContainerPort: port.Num(), Proto: strings.ToLower(string(port.Proto()))}
			if pb.HostIP.IsValid() {
				p.ports = append(p.ports, pb)
				continue
			}
			// No address: Docker publishes on 0.0.0.0 and :: (the start's
			// inspect says so). Both are planned now, so that the pass
			// after the start changes no rule while the process starts.
			v6 := pb
			pb.HostIP, v6.HostIP = netip.IPv4Unspecified(), netip.IPv6Unspecified()
			p.ports = append(p.ports, pb, v6)
		}
	}
	if c.plans == nil {
		c.plans = map[string]startPlan{}
	}
	c.plans[id] = p
}

// noteConnect takes a network connect for a container with a plan that
// is not running (c.mu held): its address is read from the network.
// false: not such a container, re-read it as any other.
func (c *cache) noteConnect(container, network string) bool {
	if ct, known := c.containers[container]; known && !ct.Starting {
		return false // running: a network connected to it, read by inspect
	}
	if _, ok := c.plans[container]; !ok {
		return false
	}
	if c.connecting == nil {
		c.connecting = map[string][]string{}
	}
	c.connecting[container] = append(c.connecting[container], network)
	return true
}

// starting makes the entries of containers connected while starting
// (c.mu held). One whose address cannot be read is re-read by inspect.
func (w *Watcher) starting(ctx context.Context) {
	c := &w.cache
	for id, nets := range c.connecting {
		ct, ok := w.startEntry(ctx, id, nets)
		if !ok {
			c.dirty[id] = true
			continue
		}
		c.links.assign(&ct, c.netBridges)
		c.containers[id] = c.stamp(ct)
		if w.Log != nil {
			w.Log.WithField("container", ct.Name).Debug("connected while starting: its allows go in now, before its process runs")
		}
	}
	clear(c.connecting)
}

// startEntry is a starting container's entry: its plan on the addresses
// the networks it was connected to give it (those of an earlier connect
// kept).
func (w *Watcher) startEntry(ctx context.Context, id string, nets []string) (rules.Container, bool) {
	p := w.cache.plans[id]
	ct := rules.Container{ID: id, Name: p.name, Labels: p.labels, ImageLabels: p.imageLabels, Ports: p.ports, Starting: true}
	if prev, ok := w.cache.containers[id]; ok && prev.Starting {
		ct.Endpoints = slices.Clone(prev.Endpoints)
	}
	for _, netID := range nets {
		res, err := w.API.NetworkInspect(ctx, netID, client.NetworkInspectOptions{})
		if err != nil {
			return rules.Container{}, false
		}
		ep, ok := res.Network.Containers[id]
		if !ok {
			return rules.Container{}, false
		}
		e := rules.Endpoint{Network: res.Network.Name, IPv4: ep.IPv4Address.Addr().Unmap()}
		if ep.IPv6Address.IsValid() {
			e.IPv6 = ep.IPv6Address.Addr()
		}
		if !e.IPv4.IsValid() && !e.IPv6.IsValid() {
			return rules.Container{}, false
		}
		ct.Endpoints = slices.DeleteFunc(ct.Endpoints, func(o rules.Endpoint) bool { return o.Network == e.Network })
		ct.Endpoints = append(ct.Endpoints, e)
	}
	return ct, len(ct.Endpoints) > 0
}
