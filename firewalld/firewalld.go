// Package firewalld is dockmoat's contact with firewalld, over the D-Bus
// system bus (DBUS_SYSTEM_BUS_ADDRESS, or the standard socket): whether it
// runs, when it reloads or restarts (each time it has emptied every
// iptables table, dockmoat's chains with Docker's), and what it filters,
// for audit. It only reads and listens: dockmoat never changes firewalld's
// state and never uses its direct rules.
package firewalld

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/godbus/dbus/v5"
)

// D-Bus names of firewalld.
const (
	Name      = "org.fedoraproject.FirewallD1"
	path      = "/org/fedoraproject/FirewallD1"
	zoneIface = Name + ".zone"
	confPath  = "/org/fedoraproject/FirewallD1/config"
	confIface = Name + ".config"
)

// Bus is a connection to the system bus.
type Bus struct{ conn *dbus.Conn }

// Connect opens a private connection to the system bus.
func Connect() (*Bus, error) {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return nil, fmt.Errorf("connecting to the D-Bus system bus: %w", err)
	}
	return &Bus{conn: conn}, nil
}

// Close closes the connection.
func (b *Bus) Close() error { return b.conn.Close() }

// Running reports whether firewalld holds its name on the bus.
func (b *Bus) Running(ctx context.Context) (bool, error) {
	var has bool
	err := b.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, Name).Store(&has)
	if err != nil {
		return false, fmt.Errorf("asking the bus for %s: %w", Name, err)
	}
	return has, nil
}

// Watch calls changed with a reason each time firewalld reloads or
// (re)starts, until ctx ends. A start is firewalld taking its name on the
// bus; a reload is its Reloaded signal. Any local process may emit a
// signal named Reloaded, so only firewalld's own count (see events), and
// changed runs on one goroutine of its own: a burst of events while it
// runs is one more call, and signals are read as fast as they come (the
// D-Bus library starts a goroutine per signal a full channel cannot take).
func (b *Bus) Watch(ctx context.Context, changed func(reason string)) error {
	if err := b.conn.AddMatchSignalContext(ctx, dbus.WithMatchSender(Name), dbus.WithMatchInterface(Name), dbus.WithMatchMember("Reloaded")); err != nil {
		return fmt.Errorf("subscribing to firewalld's Reloaded signal: %w", err)
	}
	if err := b.conn.AddMatchSignalContext(ctx, dbus.WithMatchSender(busName), dbus.WithMatchInterface(busName), dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, Name)); err != nil {
		return fmt.Errorf("subscribing to firewalld's name changes: %w", err)
	}
	signals := make(chan *dbus.Signal, 64)
	b.conn.Signal(signals)
	defer b.conn.RemoveSignal(signals)
	// The owner is asked after subscribing, so no change falls between.
	ev := events{}
	_ = b.conn.BusObject().CallWithContext(ctx, busName+".GetNameOwner", 0, Name).Store(&ev.owner)
	var mu sync.Mutex
	var next string
	wake := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
			mu.Lock()
			reason := next
			mu.Unlock()
			changed(reason)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-signals:
			if !ok {
				return errors.New("D-Bus connection closed")
			}
			if reason := ev.reason(s); reason != "" {
				mu.Lock()
				next = reason
				mu.Unlock()
				select {
				case wake <- struct{}{}:
				default: // a call is pending; it will carry this reason
				}
			}
		}
	}
}

// busName is the bus daemon's own name, the sender of NameOwnerChanged.
const busName = "org.freedesktop.DBus"

// events tells firewalld's events from look-alikes: a Reloaded signal
// counts only from the unique name that owns firewalld's name now, a
// NameOwnerChanged only from the bus daemon (which also tells the owner).
type events struct{ owner string }

// reason names what a signal means, "" for one that changes nothing or
// that someone other than firewalld or the bus sent.
func (ev *events) reason(s *dbus.Signal) string {
	switch s.Name {
	case Name + ".Reloaded":
		if ev.owner == "" || s.Sender != ev.owner {
			return ""
		}
		return "firewalld reloaded"
	case busName + ".NameOwnerChanged":
		if s.Sender != busName || len(s.Body) != 3 {
			return ""
		}
		if name, _ := s.Body[0].(string); name != Name {
			return ""
		}
		ev.owner, _ = s.Body[2].(string)
		if ev.owner != "" {
			return "firewalld started"
		}
		return "firewalld stopped"
	}
	return ""
}

// State is what audit tells of firewalld.
type State struct {
	Version string
	Backend string // FirewallBackend: nftables or iptables
	// Zones maps each active zone to its interfaces and sources.
	Zones       map[string][]string
	DefaultZone string
	// StrictForwardPorts is "" when this firewalld has no such setting
	// (it appeared in firewalld 2.3).
	StrictForwardPorts string
}

// Read asks firewalld for its state.
func (b *Bus) Read(ctx context.Context) (State, error) {
	var st State
	obj := b.conn.Object(Name, path)
	if v, err := obj.GetProperty(Name + ".version"); err == nil {
		st.Version, _ = v.Value().(string)
	}
	conf := b.conn.Object(Name, confPath)
	if v, err := conf.GetProperty(confIface + ".FirewallBackend"); err == nil {
		st.Backend, _ = v.Value().(string)
	}
	if v, err := conf.GetProperty(confIface + ".StrictForwardPorts"); err == nil {
		switch x := v.Value().(type) {
		case string:
			st.StrictForwardPorts = x
		case bool:
			st.StrictForwardPorts = fmt.Sprint(x)
		}
	}
	if err := obj.CallWithContext(ctx, Name+".getDefaultZone", 0).Store(&st.DefaultZone); err != nil {
		return st, fmt.Errorf("firewalld getDefaultZone: %w", err)
	}
	var active map[string]map[string][]string
	if err := obj.CallWithContext(ctx, zoneIface+".getActiveZones", 0).Store(&active); err != nil {
		return st, fmt.Errorf("firewalld getActiveZones: %w", err)
	}
	st.Zones = map[string][]string{}
	for zone, m := range active {
		members := append(append([]string(nil), m["interfaces"]...), m["sources"]...)
		sort.Strings(members)
		st.Zones[zone] = members
	}
	return st, nil
}

// Describe says in one line per fact what firewalld does here.
func (st State) Describe() []string {
	out := []string{fmt.Sprintf("firewalld %s runs (backend %s, default zone %s); its reloads and restarts empty every iptables table: Docker and dockmoat put their rules back on its signals", st.Version, st.Backend, st.DefaultZone)}
	zones := make([]string, 0, len(st.Zones))
	for z := range st.Zones {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	for _, z := range zones {
		out = append(out, fmt.Sprintf("firewalld zone %s filters what arrives on %s", z, strings.Join(st.Zones[z], ", ")))
	}
	if st.StrictForwardPorts == "" {
		out = append(out, "firewalld has no StrictForwardPorts setting (added in 2.3): Docker's published ports are not subject to firewalld's zones; dockmoat decides them")
	} else {
		out = append(out, "firewalld StrictForwardPorts="+st.StrictForwardPorts)
	}
	return out
}
