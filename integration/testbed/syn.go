package testbed

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// TCP flag bits.
const (
	FlagSYN = 0x02
	FlagPSH = 0x08
	FlagACK = 0x10
	FlagURG = 0x20
)

// TrySYN sends one TCP first packet with the given flags (SYN plus PSH,
// URG…: what a client may choose and a socket cannot) from src in netns
// to dst on a raw socket, and reports whether a SYN-ACK came back. The
// namespace's own stack answers that SYN-ACK with a RST; nothing else is
// sent. IPv4 only.
func TrySYN(ctx context.Context, netns string, src netip.Addr, dst netip.AddrPort, flags byte, timeout time.Duration) (bool, error) {
	var got bool
	err := InNetns(netns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			return fmt.Errorf("bind raw socket to %s: %w", src, err)
		}
		sport := uint16(40000 + rand.IntN(20000))
		seg := tcpSegment(src, dst, sport, flags)
		if err := unix.Sendto(fd, seg, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()}); err != nil {
			return fmt.Errorf("send SYN: %w", err)
		}
		deadline := time.Now().Add(timeout)
		buf := make([]byte, 1500)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			tv := unix.NsecToTimeval(int64(time.Until(deadline)))
			_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return nil // timed out: no answer
			}
			if synAck(buf[:n], dst, src, sport) {
				got = true
				return nil
			}
		}
		return nil
	})
	return got, err
}

// tcpSegment builds a 20-byte TCP header with its checksum.
func tcpSegment(src netip.Addr, dst netip.AddrPort, sport uint16, flags byte) []byte {
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dst.Port())
	binary.BigEndian.PutUint32(seg[4:], rand.Uint32())
	seg[12] = 5 << 4 // data offset: 5 words
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], 64240) // window
	s, d := src.As4(), dst.Addr().As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, unix.IPPROTO_TCP, 0, 20)
	binary.BigEndian.PutUint16(seg[16:], checksum(append(pseudo, seg...)))
	return seg
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// synAck reports whether an IPv4 packet is from → to a SYN-ACK to sport.
func synAck(pkt []byte, from netip.AddrPort, to netip.Addr, sport uint16) bool {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return false
	}
	ihl := int(pkt[0]&0x0f) * 4
	if len(pkt) < ihl+14 {
		return false
	}
	srcIP, _ := netip.AddrFromSlice(pkt[12:16])
	dstIP, _ := netip.AddrFromSlice(pkt[16:20])
	tcp := pkt[ihl:]
	return srcIP == from.Addr() && dstIP == to &&
		binary.BigEndian.Uint16(tcp[0:]) == from.Port() && binary.BigEndian.Uint16(tcp[2:]) == sport &&
		tcp[13]&(FlagSYN|FlagACK) == FlagSYN|FlagACK
}
