package nfgen

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Change is what one nf_tables notification touched.
type Change struct {
	Family uint8  // NFPROTO_*: 2 IPv4, 10 IPv6, 1 inet, 7 bridge
	Table  string // "" when the message names none
	Chain  string // of a rule or a chain; "" otherwise
	Rule   bool   // a rule was added, replaced or deleted
}

// Changes follows the nf_tables notifications of the namespace it was
// opened in, so that a caller holding a listing made at one generation
// can learn, without listing again, that nothing it reads was committed
// since: Docker's connect of a container moves the generation with rules
// in its own chains, which a listing of dockmoat's hooks and chains need
// not see. Nothing runs in the background: the notifications queue in
// the socket (the kernel queues them before the committing call
// returns) and Quiet reads them. Not safe for concurrent use.
type Changes struct {
	fd       int
	relevant func(Change) bool
	since    uint32 // the generation when the subscription began
	seen     uint32 // the generation of the last NEWGEN read
	hit      uint32 // the generation of the last relevant change
	anyHit   bool
	pending  bool // relevant changes read whose NEWGEN is not yet
	lost     bool // the socket overran: the next generation counts as relevant
	buf      []byte
}

// Subscribe opens a subscription in the calling thread's namespace;
// relevant says which changes invalidate the caller's listings.
func Subscribe(relevant func(Change) bool) (*Changes, error) {
	// Between two passes Docker may commit thousands of rules: room for
	// them, and an overrun is noticed (ENOBUFS) and counted as a change.
	fd, err := Join(unix.SOCK_NONBLOCK, 4<<20)
	if err != nil {
		return nil, err
	}
	// Read after joining: every later change is announced to us.
	since, err := Read()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Changes{fd: fd, relevant: relevant, since: since, seen: since, buf: make([]byte, 64<<10)}, nil
}

// Join opens a netlink socket in the calling thread's namespace that
// receives its nf_tables notifications (group NFNLGRP_NFTABLES), with
// the extra socket flags and a receive buffer of rcvbuf bytes (forced
// where the caller may, asked for otherwise).
func Join(flags, rcvbuf int) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|flags, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, fmt.Errorf("nf_tables notifications: opening a netlink socket: %w", err)
	}
	const nfnlgrpNFTables = 7
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (nfnlgrpNFTables - 1)}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("nf_tables notifications: joining the group: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	return fd, nil
}

// Close ends the subscription.
func (c *Changes) Close() error { return unix.Close(c.fd) }

// after reports whether generation a is later than b (they wrap).
func after(a, b uint32) bool { return int32(a-b) > 0 }

// Quiet reports whether no relevant change was committed after
// generation from up to generation to (read by Read just now): every
// notification up to to was read, none was lost, and none was relevant.
// False when it cannot tell (to's notifications not read within a few
// milliseconds, from older than the subscription).
func (c *Changes) Quiet(from, to uint32) bool {
	for wait := 0; ; wait++ {
		if err := c.drain(); err != nil {
			return false
		}
		if !after(to, c.seen) {
			return c.quietUpTo(from, to)
		}
		if wait == 20 {
			return false
		}
		// Read may see a commit's generation a moment before its
		// notifications are queued.
		time.Sleep(100 * time.Microsecond)
	}
}

// quietUpTo is Quiet on the notifications read so far.
func (c *Changes) quietUpTo(from, to uint32) bool {
	if after(c.since, from) || after(to, c.seen) {
		return false
	}
	return !c.anyHit || !after(c.hit, from)
}

// drain reads every queued notification.
func (c *Changes) drain() error {
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_DONTWAIT)
		switch err {
		case nil:
			c.read(c.buf[:n])
		case unix.ENOBUFS:
			c.lost = true
		case unix.EINTR:
		case unix.EAGAIN:
			return nil
		default:
			return err
		}
	}
}

// read takes the messages of one datagram.
func (c *Changes) read(b []byte) {
	for len(b) >= unix.SizeofNlMsghdr {
		n := int(binary.NativeEndian.Uint32(b[0:]))
		if n < unix.SizeofNlMsghdr || n > len(b) {
			c.lost = true // unreadable: assume the worst
			return
		}
		c.message(binary.NativeEndian.Uint16(b[4:]), b[unix.SizeofNlMsghdr:n])
		b = b[min((n+3)&^3, len(b)):]
	}
}

// message takes one notification: a change, or the NEWGEN that ends a
// committed transaction's notifications.
func (c *Changes) message(typ uint16, body []byte) {
	if typ>>8 != unix.NFNL_SUBSYS_NFTABLES || len(body) < sizeofNfgenmsg {
		return
	}
	msg := typ & 0xff
	if msg == unix.NFT_MSG_NEWGEN {
		gen, ok := attrU32(body[sizeofNfgenmsg:], unix.NFTA_GEN_ID)
		if !ok {
			c.lost = true
			return
		}
		if c.pending || c.lost {
			c.hit, c.anyHit = gen, true
		}
		c.seen, c.pending, c.lost = gen, false, false
		return
	}
	ch := Change{Family: body[0], Table: attrString(body[sizeofNfgenmsg:], 1)} // NFTA_*_TABLE is 1 in every message
	switch msg {
	case unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE:
		ch.Rule, ch.Chain = true, attrString(body[sizeofNfgenmsg:], unix.NFTA_RULE_CHAIN)
	case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN:
		ch.Chain = attrString(body[sizeofNfgenmsg:], unix.NFTA_CHAIN_NAME)
	}
	if c.relevant(ch) {
		c.pending = true
	}
}

// findAttr returns the value of the first attribute of type typ.
func findAttr(a []byte, typ uint16) ([]byte, bool) {
	for len(a) >= 4 {
		alen := int(binary.NativeEndian.Uint16(a[0:]))
		if alen < 4 || alen > len(a) {
			return nil, false
		}
		if binary.NativeEndian.Uint16(a[2:])&^unix.NLA_F_NESTED == typ {
			return a[4:alen], true
		}
		a = a[min((alen+3)&^3, len(a)):]
	}
	return nil, false
}

func attrU32(a []byte, typ uint16) (uint32, bool) {
	v, ok := findAttr(a, typ)
	if !ok || len(v) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

func attrString(a []byte, typ uint16) string {
	v, _ := findAttr(a, typ)
	for i, ch := range v {
		if ch == 0 {
			return string(v[:i])
		}
	}
	return string(v)
}

// attrsWellFormed reports whether a walks to its end in whole attributes.
func attrsWellFormed(a []byte) bool {
	for len(a) >= 4 {
		alen := int(binary.NativeEndian.Uint16(a[0:]))
		if alen < 4 || alen > len(a) {
			return false
		}
		a = a[min((alen+3)&^3, len(a)):]
	}
	return len(a) == 0
}
