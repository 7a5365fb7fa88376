// Package nfgen reads the nf_tables ruleset generation of the calling
// thread's network namespace: one netlink request (NFT_MSG_GETGEN), no
// exec. The kernel bumps the generation on every committed nf_tables
// transaction, whoever makes it (iptables-nft, nft, firewalld, Docker),
// so an unchanged generation proves that a listing taken after the
// earlier read still describes the ruleset. ipset changes are not
// nf_tables transactions and do not move it. Where the generation moved,
// Changes (the namespace's nf_tables notifications: which tables and
// chains each transaction touched) can still prove that nothing a given
// listing reads was changed.
package nfgen

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Read returns the current generation. The socket is opened for this
// one request, on the calling thread, so it sees the same namespace as a
// listing that thread would exec.
func Read() (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: opening a netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, request(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("nf_tables generation: sending the request: %w", err)
	}
	buf := make([]byte, 512)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("nf_tables generation: reading the answer: %w", err)
		}
		return parse(buf[:n])
	}
}

// request is the GETGEN message: the netlink header and nfgenmsg
// (family unspecified, version 0).
func request() []byte {
	b := make([]byte, unix.SizeofNlMsghdr+sizeofNfgenmsg)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(b[8:], 1) // sequence
	b[unix.SizeofNlMsghdr+1] = unix.NFNETLINK_V0
	return b
}

// sizeofNfgenmsg is struct nfgenmsg: family, version, resource id.
const sizeofNfgenmsg = 4

var errShort = errors.New("nf_tables generation: short answer")

// parse reads NFTA_GEN_ID from a NEWGEN answer, or the errno of an
// error answer.
func parse(b []byte) (uint32, error) {
	if len(b) < unix.SizeofNlMsghdr {
		return 0, errShort
	}
	n := min(int(binary.NativeEndian.Uint32(b[0:])), len(b))
	typ := binary.NativeEndian.Uint16(b[4:])
	if typ == unix.NLMSG_ERROR {
		if n < unix.SizeofNlMsghdr+4 {
			return 0, errShort
		}
		code := int32(binary.NativeEndian.Uint32(b[unix.SizeofNlMsghdr:]))
		return 0, fmt.Errorf("nf_tables generation: %w", unix.Errno(-code))
	}
	if typ != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN {
		return 0, fmt.Errorf("nf_tables generation: unexpected message type %#x", typ)
	}
	if n < unix.SizeofNlMsghdr+sizeofNfgenmsg {
		return 0, errShort
	}
	if !attrsWellFormed(b[unix.SizeofNlMsghdr+sizeofNfgenmsg : n]) {
		return 0, errShort
	}
	if gen, ok := attrU32(b[unix.SizeofNlMsghdr+sizeofNfgenmsg:n], unix.NFTA_GEN_ID); ok {
		return gen, nil
	}
	return 0, errors.New("nf_tables generation: no NFTA_GEN_ID in the answer")
}
