package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// InNetns runs fn on an OS thread switched into the network namespace at
// path. Sockets created by fn live in that namespace for their whole life,
// so a test can act as the "outside" client without any helper process.
// If switching back fails the thread stays locked and dies with fn's
// goroutine rather than leaking the namespace into the rest of the test.
func InNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("opening own netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening netns %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Probe is one connection attempt.
type Probe struct {
	Proto   string // tcp or udp
	Src     netip.Addr
	SrcPort int // 0 = any
	Dst     netip.AddrPort
}

func (p Probe) String() string {
	src := p.Src.String()
	if p.SrcPort != 0 {
		src = netip.AddrPortFrom(p.Src, uint16(p.SrcPort)).String()
	}
	return fmt.Sprintf("%s %s -> %s", p.Proto, src, p.Dst)
}

// ErrNoAnswer means the attempt timed out: dropped somewhere.
var ErrNoAnswer = errors.New("no answer")

// ErrNoGreeting means a TCP connection was made but the server said
// nothing in time: the firewall let it through, the server was slow.
var ErrNoGreeting = errors.New("connected but no greeting")

// Try makes one attempt from inside netns and returns the server's
// greeting line. TCP must connect and read the greeting; UDP must get a
// reply datagram.
func Try(ctx context.Context, netns string, p Probe, timeout time.Duration) (string, error) {
	var answer string
	err := InNetns(netns, func() error {
		deadline := time.Now().Add(timeout)
		switch p.Proto {
		case "tcp":
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: p.Src.AsSlice(), Port: p.SrcPort}, Deadline: deadline}
			c, err := d.DialContext(ctx, "tcp", p.Dst.String())
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return ErrNoAnswer
				}
				return err
			}
			defer c.Close()
			_ = c.SetReadDeadline(deadline)
			buf := make([]byte, 256)
			n, err := c.Read(buf)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrNoGreeting, err)
			}
			answer = strings.TrimSpace(string(buf[:n]))
			return nil
		case "udp":
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: p.Src.AsSlice(), Port: p.SrcPort}, net.UDPAddrFromAddrPort(p.Dst))
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(deadline)
			buf := make([]byte, 256)
			// Resend a few times: the first datagram may race a rule change.
			for time.Now().Before(deadline) {
				if _, err := c.Write([]byte("ping\n")); err != nil {
					return err
				}
				wait := time.Now().Add(300 * time.Millisecond)
				if wait.After(deadline) {
					wait = deadline
				}
				_ = c.SetReadDeadline(wait)
				n, err := c.Read(buf)
				if err == nil {
					answer = strings.TrimSpace(string(buf[:n]))
					return nil
				}
			}
			return ErrNoAnswer
		default:
			return fmt.Errorf("unknown protocol %q", p.Proto)
		}
	})
	return answer, err
}
