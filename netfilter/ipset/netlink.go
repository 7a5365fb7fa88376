// Package ipset speaks the kernel's ipset protocol over netlink for
// dockmoat's sets (see rules/policy/sets.go): create, list, add, delete, destroy.
// A set-element change costs tens of microseconds and needs no `ipset`
// binary on the host or in the image. The iptables backend uses it
// through its SetStore interface; audit reads the sets with it.
package ipset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/setelem"
)

// setMaxElem bounds each set: 10,000 containers with several sources each
// fit; the kernel allocates buckets as elements arrive, not up front.
const setMaxElem = 1 << 20

// The set types dockmoat creates: allow sets of container targets
// (hash:ip,port), of targets and allowed sources (hash:ip,port,net), and
// ban sets of source prefixes (hash:net).
const (
	TypeIPPort    = "hash:ip,port"
	TypeIPPortNet = "hash:ip,port,net"
	TypeNet       = "hash:net"
)

// Netlink is the kernel's sets (an ipt.SetStore). Its socket belongs to
// the network namespace it was opened in.
type Netlink struct {
	mu sync.Mutex
	h  *netlink.Handle
	// sock carries the raw requests (element batches, listing). Both
	// sockets are opened up front, so they belong to the namespace of the
	// caller of Open whatever thread uses them later.
	sock map[int]*nl.SocketHandle
}

// New opens a netlink socket and asks the kernel whether it has
// the set types dockmoat uses (IPSET_CMD_TYPE: a question, nothing is
// created). An error means: use one rule per allow instead.
func New() (*Netlink, error) {
	s, err := Open()
	if err != nil {
		return nil, err
	}
	for _, typ := range []string{TypeIPPort, TypeIPPortNet} {
		if err := s.hasType(typ); err != nil {
			s.Close()
			return nil, fmt.Errorf("kernel ipset support (%s): %w", typ, err)
		}
	}
	return s, nil
}

// hasType asks the kernel for an IPv4 set type (the IPv6 variants come
// with the same kernel module).
func (s *Netlink) hasType(typ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := s.request(nl.IPSET_CMD_TYPE, unix.NLM_F_ACK)
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_TYPENAME, nl.ZeroTerminated(typ)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_FAMILY, nl.Uint8Attr(unix.AF_INET)))
	_, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	return ipsetErr(err)
}

// request starts an ipset command on the socket opened up front: the
// netfilter header and the protocol version every command carries.
func (s *Netlink) request(cmd, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(cmd|(unix.NFNL_SUBSYS_IPSET<<8), flags)
	req.Sockets = s.sock
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_NETLINK), Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
	return req
}

// ipsetErr names ipset's own error numbers ("Cannot find set type"…).
func ipsetErr(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) && int(errno) >= nl.IPSET_ERR_PRIVATE {
		return nl.IPSetError(uintptr(errno))
	}
	return err
}

// Open opens the socket only, for readers (audit) that must
// not write even a probe set.
func Open() (*Netlink, error) {
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening a netfilter netlink socket: %w", err)
	}
	sock, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("opening a netfilter netlink socket: %w", err)
	}
	return &Netlink{h: h, sock: map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: sock}}}, nil
}

// Close releases the sockets.
func (s *Netlink) Close() {
	s.h.Close()
	s.sock[unix.NETLINK_NETFILTER].Socket.Close()
}

func family(fam rules.Family) uint8 {
	if fam == rules.IPv6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// Create implements ipt.SetStore.
func (s *Netlink) Create(name, typ string, fam rules.Family) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.h.IpsetCreate(name, typ, netlink.IpsetCreateOptions{Family: family(fam), MaxElements: setMaxElem})
	if err == nil || errors.Is(err, nl.IPSetError(nl.IPSET_ERR_EXIST)) {
		return nil
	}
	return fmt.Errorf("creating ipset %s (%s): %w", name, typ, err)
}

// CreateBan makes a ban set (hash:net, each element with an optional
// timeout) if it does not exist; one that exists is left as it is, its
// elements included: they are the user's (fail2ban's, CrowdSec's).
func (s *Netlink) CreateBan(name string, fam rules.Family) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var forever uint32
	err := s.h.IpsetCreate(name, TypeNet, netlink.IpsetCreateOptions{Family: family(fam), MaxElements: setMaxElem, Timeout: &forever})
	if err == nil || errors.Is(err, nl.IPSetError(nl.IPSET_ERR_EXIST)) || errors.Is(err, unix.EEXIST) {
		return nil
	}
	return fmt.Errorf("creating ban set %s: %w", name, err)
}

// ListNets returns the prefixes a hash:net set holds (a ban set's),
// exists false when there is no such set.
func (s *Netlink) ListNets(name string) (nets []netip.Prefix, exists bool, err error) {
	exists, err = s.dump(name, func(data []byte) error {
		if p, ok := parseNet(data); ok {
			nets = append(nets, p)
		}
		return nil
	})
	return nets, exists, err
}

// parseNet reads a hash:net element: its address and prefix length.
func parseNet(data []byte) (netip.Prefix, bool) {
	var addr netip.Addr
	bits := -1
	for typ, val := range attrs(data) {
		switch typ {
		case nl.IPSET_ATTR_IP:
			for _, a := range attrs(val) {
				addr, _ = netip.AddrFromSlice(a)
			}
		case nl.IPSET_ATTR_CIDR:
			if len(val) == 1 {
				bits = int(val[0])
			}
		}
	}
	if !addr.IsValid() {
		return netip.Prefix{}, false
	}
	if bits < 0 {
		bits = addr.BitLen()
	}
	return netip.PrefixFrom(addr, bits), true
}

// Destroy implements ipt.SetStore.
func (s *Netlink) Destroy(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.h.IpsetDestroy(name)
	if err == nil || errors.Is(err, unix.ENOENT) || errors.Is(err, nl.IPSetError(nl.IPSET_ERR_PROTOCOL)) {
		return nil
	}
	return fmt.Errorf("destroying ipset %s: %w", name, err)
}

// Add implements ipt.SetStore; an element already present is not an error.
func (s *Netlink) Add(name string, elems []setelem.Elem) error {
	return s.write(nl.IPSET_CMD_ADD, name, elems)
}

// Del implements ipt.SetStore; an element already gone is not an error.
func (s *Netlink) Del(name string, elems []setelem.Elem) error {
	return s.write(nl.IPSET_CMD_DEL, name, elems)
}

// setBatch is how many elements go into one netlink message: about 18 kB,
// well under the socket's buffer, and 10,000 elements in 40 round trips
// instead of 10,000 (as `ipset restore` does).
const setBatch = 256

// write adds or deletes elements, many per message (an IPSET_ATTR_ADT
// list). Without NLM_F_EXCL the kernel ignores an element already there
// (add) or already gone (del).
func (s *Netlink) write(cmd int, name string, elems []setelem.Elem) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	verb := map[int]string{nl.IPSET_CMD_ADD: "adding to", nl.IPSET_CMD_DEL: "deleting from"}[cmd]
	for len(elems) > 0 {
		chunk := elems[:min(setBatch, len(elems))]
		elems = elems[len(chunk):]
		req := s.request(cmd, unix.NLM_F_ACK)
		req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(name)))
		adt := nl.NewRtAttr(nl.IPSET_ATTR_ADT|int(nl.NLA_F_NESTED), nil)
		for _, e := range chunk {
			adt.AddChild(elemData(e))
		}
		req.AddData(adt)
		// The kernel wants a line number with a list (for errors).
		req.AddData(&nl.Uint32Attribute{Type: nl.IPSET_ATTR_LINENO | nl.NLA_F_NET_BYTEORDER, Value: 0})
		if _, err := req.Execute(unix.NETLINK_NETFILTER, 0); err != nil {
			err = ipsetErr(err)
			return fmt.Errorf("%s ipset %s (%d elements from %s): %w", verb, name, len(chunk), chunk[0], err)
		}
	}
	return nil
}

// elemData encodes one element as the kernel's IPSET_ATTR_DATA.
func elemData(e setelem.Elem) *nl.RtAttr {
	data := nl.NewRtAttr(nl.IPSET_ATTR_DATA|int(nl.NLA_F_NESTED), nil)
	data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_IP|int(nl.NLA_F_NESTED), ipAttr(e.Addr).Serialize()))
	if e.Src.IsValid() {
		data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_IP2|int(nl.NLA_F_NESTED), ipAttr(e.Src.Addr()).Serialize()))
		data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_CIDR2, nl.Uint8Attr(uint8(e.Src.Bits()))))
	}
	data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_PROTO, nl.Uint8Attr(rules.ProtoNumber(e.Proto))))
	port := make([]byte, 2)
	binary.BigEndian.PutUint16(port, e.Port)
	data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_PORT|int(nl.NLA_F_NET_BYTEORDER), port))
	return data
}

func ipAttr(a netip.Addr) *nl.RtAttr {
	typ := int(nl.NLA_F_NET_BYTEORDER) | nl.IPSET_ATTR_IPADDR_IPV4
	if a.Is6() && !a.Is4In6() {
		typ = int(nl.NLA_F_NET_BYTEORDER) | nl.IPSET_ATTR_IPADDR_IPV6
	}
	return nl.NewRtAttr(typ, a.Unmap().AsSlice())
}

func protoName(n uint8) string {
	if name := rules.ProtoName(n); name != "" {
		return name
	}
	return fmt.Sprintf("proto%d", n)
}

// List implements ipt.SetStore. It parses the dump itself: the library's
// parser costs ten times the kernel's dump at 10,000 elements.
func (s *Netlink) List(name string) ([]setelem.Elem, bool, error) {
	var out []setelem.Elem
	exists, err := s.dump(name, func(data []byte) error {
		e, err := parseElem(data)
		out = append(out, e)
		return err
	})
	return out, exists, err
}

// dump lists set name, handing each element's data attribute to each;
// exists is false when there is no such set.
func (s *Netlink) dump(name string, each func(data []byte) error) (exists bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := s.request(nl.IPSET_CMD_LIST, nl.GetIpsetFlags(nl.IPSET_CMD_LIST))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(name)))
	var perr error
	err = req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(msg []byte) bool {
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
				if err := each(data); err != nil {
					perr = fmt.Errorf("ipset %s: %w", name, err)
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) && (errno == unix.ENOENT || int(errno) == nl.IPSET_ERR_PROTOCOL) {
			return false, nil
		}
		return false, fmt.Errorf("listing ipset %s: %w", name, err)
	}
	return true, perr
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

func parseElem(data []byte) (setelem.Elem, error) {
	var e setelem.Elem
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
