package dockerwatch

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dockmoat/dockmoat/rules"
)

// hostLinks is what one netlink dump tells of the host's interfaces: the
// names of those that are not a bridge's ports (rules.Snapshot.Links: a
// br-* bridge Docker does not list is the host's own, and no routed packet
// leaves by a port), and the host ends of veths on a bridge, with the
// network namespace of their peer.
//
// Egress is bound to a container's interface, not to the address it
// claims (rules.EgressFrom), and Docker does not say which veth is a
// container's. The kernel does: the host end of a veth reports the id of
// its peer's namespace (IFLA_LINK_NETNSID, allocated by the dump), and the
// namespace Docker names (SandboxKey) has that id on the host
// (RTM_GETNSID). Neither needs a capability beyond reading the file.
type hostLinks struct {
	names []string
	veths map[int][]veth // by the peer's namespace id
}

type veth struct{ name, bridge string }

// readLinks dumps the host's links.
func readLinks() (hostLinks, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return hostLinks{}, fmt.Errorf("listing network interfaces: %w", err)
	}
	byIndex := make(map[int]netlink.Link, len(links))
	var h hostLinks
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	for _, l := range links {
		a := l.Attrs()
		master := byIndex[a.MasterIndex]
		if master == nil || master.Type() != "bridge" {
			h.names = append(h.names, a.Name)
			continue
		}
		if l.Type() == "veth" && a.NetNsID >= 0 {
			if h.veths == nil {
				h.veths = map[int][]veth{}
			}
			h.veths[a.NetNsID] = append(h.veths[a.NetNsID], veth{name: a.Name, bridge: master.Attrs().Name})
		}
	}
	return h, nil
}

// HostLinks lists the names of the host's network interfaces that are
// not a bridge's ports (the guard's view of rules.Snapshot.Links).
func HostLinks() ([]string, error) {
	h, err := readLinks()
	return h.names, err
}

// assign sets each endpoint's HostIface: the veth on the endpoint's
// bridge whose peer lives in the container's namespace. It leaves them
// empty when the namespace cannot be read (rules reports it).
func (h hostLinks) assign(ct *rules.Container, bridges map[string]string) {
	if len(h.veths) == 0 || len(ct.Endpoints) == 0 || ct.Sandbox == "" {
		return
	}
	nsid, err := nsidOf(ct.Sandbox)
	if err != nil || nsid < 0 {
		return
	}
	eps := make([]rules.Endpoint, len(ct.Endpoints))
	for i, ep := range ct.Endpoints {
		ep.HostIface = ""
		for _, v := range h.veths[nsid] {
			if v.bridge != "" && v.bridge == bridges[ep.Network] {
				ep.HostIface = v.name
			}
		}
		eps[i] = ep
	}
	ct.Endpoints = eps // a copy: the listing's slice may be shared
}

// nsidOf is the host's id of the network namespace at path.
func nsidOf(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	id, err := netlink.GetNetNsIdByFd(int(f.Fd()))
	if err != nil {
		return -1, fmt.Errorf("the id of network namespace %s: %w", path, err)
	}
	return id, nil
}

// WatchLinks calls changed when one of the host's interfaces that is not
// a veth appears or goes, until ctx ends: the next pass then knows it
// (rules.ForeignBridges, rules.HostOutIfaces) instead of taking a new
// br-lan for Docker's, or a new host interface for a network not seen
// yet, until the periodic resync. Containers' veths come with Docker's
// own events.
func WatchLinks(ctx context.Context, changed func(reason string)) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		return fmt.Errorf("subscribing to link changes: %w", err)
	}
	known := map[int32]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return errors.New("link subscription closed")
			}
			if u.Link == nil || u.Link.Type() == "veth" {
				continue
			}
			idx := u.Index
			switch {
			case u.Header.Type == unix.RTM_DELLINK:
				delete(known, idx)
				changed("link removed: " + u.Link.Attrs().Name)
			case !known[idx]:
				known[idx] = true
				changed("link added: " + u.Link.Attrs().Name)
			}
		}
	}
}
