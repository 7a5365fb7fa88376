package reconciler

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/dockmoat/dockmoat/rules"
)

// SetStore is dockmoat's access to its ipsets (see rules/sets.go). The
// real one speaks netlink to the kernel: a set-element change costs tens
// of microseconds and needs no `ipset` binary on the host or in the image.
type SetStore interface {
	// Create makes the set if it does not exist.
	Create(name, typ string, fam rules.Family) error
	// List returns the set's elements; exists is false when there is no
	// such set.
	List(name string) (elems []rules.SetElem, exists bool, err error)
	Add(name string, elems []rules.SetElem) error
	Del(name string, elems []rules.SetElem) error
	// Destroy removes the set; a missing set is not an error.
	Destroy(name string) error
}

// setMaxElem bounds each set: 10,000 containers with several sources each
// fit; the kernel allocates buckets as elements arrive, not up front.
const setMaxElem = 1 << 20

// NetlinkSets is the kernel's SetStore. Its socket belongs to the network
// namespace it was opened in.
type NetlinkSets struct {
	mu sync.Mutex
	h  *netlink.Handle
}

// NewNetlinkSets opens a netlink socket and checks that the kernel has
// the set types dockmoat uses, by creating and destroying a probe set of
// each. An error means: use one rule per allow instead.
func NewNetlinkSets() (*NetlinkSets, error) {
	s, err := OpenNetlinkSets()
	if err != nil {
		return nil, err
	}
	h := s.h
	for _, kind := range []string{rules.SetOpen, rules.SetFrom} {
		name := "dockmoat-probe-" + kind
		if err := s.Create(name, rules.SetType(kind), rules.IPv4); err != nil {
			h.Close()
			return nil, fmt.Errorf("kernel ipset support (%s): %w", rules.SetType(kind), err)
		}
		if err := s.Destroy(name); err != nil {
			h.Close()
			return nil, err
		}
	}
	return s, nil
}

// OpenNetlinkSets opens the socket only, for readers (audit) that must
// not write even a probe set.
func OpenNetlinkSets() (*NetlinkSets, error) {
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening a netfilter netlink socket: %w", err)
	}
	return &NetlinkSets{h: h}, nil
}

// Close releases the socket.
func (s *NetlinkSets) Close() { s.h.Close() }

func family(fam rules.Family) uint8 {
	if fam == rules.IPv6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// Create implements SetStore.
func (s *NetlinkSets) Create(name, typ string, fam rules.Family) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.h.IpsetCreate(name, typ, netlink.IpsetCreateOptions{Family: family(fam), MaxElements: setMaxElem})
	if err == nil || errors.Is(err, nl.IPSetError(nl.IPSET_ERR_EXIST)) {
		return nil
	}
	return fmt.Errorf("creating ipset %s (%s): %w", name, typ, err)
}

// Destroy implements SetStore.
func (s *NetlinkSets) Destroy(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.h.IpsetDestroy(name)
	if err == nil || errors.Is(err, unix.ENOENT) || errors.Is(err, nl.IPSetError(nl.IPSET_ERR_PROTOCOL)) {
		return nil
	}
	return fmt.Errorf("destroying ipset %s: %w", name, err)
}

// Add implements SetStore; an element already present is not an error.
func (s *NetlinkSets) Add(name string, elems []rules.SetElem) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range elems {
		ent := entry(e)
		ent.Replace = true // no NLM_F_EXCL: adding twice is fine
		if err := s.h.IpsetAdd(name, ent); err != nil {
			return fmt.Errorf("adding %s to ipset %s: %w", e, name, err)
		}
	}
	return nil
}

// Del implements SetStore; an element already gone is not an error.
func (s *NetlinkSets) Del(name string, elems []rules.SetElem) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range elems {
		err := s.h.IpsetDel(name, entry(e))
		if err != nil && !errors.Is(err, nl.IPSetError(nl.IPSET_ERR_EXIST)) {
			return fmt.Errorf("deleting %s from ipset %s: %w", e, name, err)
		}
	}
	return nil
}

var protoNums = map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

func protoName(n uint8) string {
	for name, v := range protoNums {
		if v == n {
			return name
		}
	}
	return fmt.Sprintf("proto%d", n)
}

func entry(e rules.SetElem) *netlink.IPSetEntry {
	proto, port := protoNums[e.Proto], e.Port
	ent := &netlink.IPSetEntry{IP: net.IP(e.Addr.AsSlice()), Protocol: &proto, Port: &port}
	if e.Src.IsValid() {
		ent.IP2, ent.CIDR2 = net.IP(e.Src.Addr().AsSlice()), uint8(e.Src.Bits())
	}
	return ent
}

// List implements SetStore. It parses the dump itself: the library's
// parser costs ten times the kernel's dump at 10,000 elements.
func (s *NetlinkSets) List(name string) ([]rules.SetElem, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := nl.NewNetlinkRequest(nl.IPSET_CMD_LIST|(unix.NFNL_SUBSYS_IPSET<<8), nl.GetIpsetFlags(nl.IPSET_CMD_LIST))
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_NETLINK), Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(name)))
	var out []rules.SetElem
	var perr error
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(msg []byte) bool {
		if len(msg) < 4 {
			return true
		}
		for typ, val := range attrs(msg[4:]) {
			if typ != nl.IPSET_ATTR_ADT {
				continue
			}
			for typ, data := range attrs(val) {
				if typ != nl.IPSET_ATTR_DATA {
					continue
				}
				e, err := parseElem(data)
				if err != nil {
					perr = fmt.Errorf("ipset %s: %w", name, err)
					return false
				}
				out = append(out, e)
			}
		}
		return true
	})
	if err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) && (errno == unix.ENOENT || int(errno) == nl.IPSET_ERR_PROTOCOL) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("listing ipset %s: %w", name, err)
	}
	return out, true, perr
}

// attrs iterates over netlink attributes, type flags masked off.
func attrs(b []byte) func(yield func(int, []byte) bool) {
	return func(yield func(int, []byte) bool) {
		for len(b) >= 4 {
			l := int(binary.NativeEndian.Uint16(b))
			typ := int(binary.NativeEndian.Uint16(b[2:]) & nl.NLA_TYPE_MASK)
			if l < 4 || l > len(b) {
				return
			}
			if !yield(typ, b[4:l]) {
				return
			}
			l = (l + 3) &^ 3
			if l > len(b) {
				return
			}
			b = b[l:]
		}
	}
}

func parseElem(data []byte) (rules.SetElem, error) {
	var e rules.SetElem
	var src netip.Addr
	var bits = -1
	for typ, val := range attrs(data) {
		switch typ {
		case nl.IPSET_ATTR_IP, nl.IPSET_ATTR_IP2:
			for _, a := range attrs(val) {
				addr, ok := netip.AddrFromSlice(a)
				if !ok {
					return e, fmt.Errorf("bad address attribute %x", a)
				}
				if typ == nl.IPSET_ATTR_IP {
					e.Addr = addr
				} else {
					src = addr
				}
			}
		case nl.IPSET_ATTR_PORT:
			if len(val) == 2 {
				e.Port = binary.BigEndian.Uint16(val)
			}
		case nl.IPSET_ATTR_PROTO:
			if len(val) == 1 {
				e.Proto = protoName(val[0])
			}
		case nl.IPSET_ATTR_CIDR2:
			if len(val) == 1 {
				bits = int(val[0])
			}
		}
	}
	if src.IsValid() {
		if bits < 0 {
			bits = src.BitLen()
		}
		e.Src = netip.PrefixFrom(src, bits)
	}
	return e, nil
}
