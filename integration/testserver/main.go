// Command testserver is the workload of dockmoat's integration tests: a
// static binary, packed FROM scratch, that answers on every TCP and UDP
// port given as arguments ("80", "53/udp", "8000/tcp") with one line naming
// itself, so a test knows not only that a port answered but who did.
// "7000/echo" keeps TCP sessions open and echoes each line back. With
// "connect HOST:PORT" it instead dials out once and prints the answer, to
// prove containers' outbound traffic still works. "probe SPEC…" tries each
// of tcp:ADDR:PORT, udp:ADDR:PORT and dns:NAME once and prints one line
// per try ("SPEC ok …" or "SPEC fail …"); "~SRC" after a tcp or udp spec
// sends from the address SRC (one the test added to the container); "hold ADDR:PORT SECONDS" keeps
// an echo session busy and reports when it is cut. "ADDR:53/dns" serves
// DNS on ADDR (UDP and TCP), answering every A query with 192.0.2.99.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "connect" {
		os.Exit(connect(os.Args[2]))
	}
	if len(os.Args) >= 2 && os.Args[1] == "probe" {
		specs := os.Args[2:]
		// "wait=DURATION" first: give dockmoat time to see the container.
		if len(specs) > 0 && strings.HasPrefix(specs[0], "wait=") {
			d, _ := time.ParseDuration(strings.TrimPrefix(specs[0], "wait="))
			time.Sleep(d)
			specs = specs[1:]
		}
		for _, spec := range specs {
			fmt.Println(spec, probe(spec))
		}
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "hold" {
		os.Exit(hold(os.Args[2], os.Args[3]))
	}
	if len(os.Args) == 4 && os.Args[1] == "hammer" {
		hammer(os.Args[2], os.Args[3])
		return
	}
	name, _ := os.Hostname()
	if n := os.Getenv("NAME"); n != "" {
		name = n
	}
	for _, arg := range os.Args[1:] {
		port, proto, _ := strings.Cut(arg, "/")
		if proto == "" || proto == "tcp" || proto == "echo" {
			go serveTCP(name, port, proto == "echo")
		}
		if proto == "" || proto == "udp" {
			go serveUDP(name, port)
		}
		if proto == "dns" {
			go serveDNS(port)
		}
	}
	select {}
}

func serveTCP(name, port string, echo bool) {
	l, err := net.Listen("tcp", ":"+port)
	exitOn("listen tcp", err)
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "hello from %s tcp/%s to %s\n", name, port, c.RemoteAddr())
			if !echo {
				return
			}
			// Echo mode keeps the session open: each line comes back.
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := c.Write([]byte(line)); err != nil {
					return
				}
			}
		}()
	}
}

func serveUDP(name, port string) {
	pc, err := net.ListenPacket("udp", ":"+port)
	exitOn("listen udp", err)
	buf := make([]byte, 1500)
	for {
		_, addr, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		_, _ = pc.WriteTo([]byte(fmt.Sprintf("hello from %s udp/%s to %s\n", name, port, addr)), addr)
	}
}

func connect(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		fmt.Println("connect failed:", err)
		return 1
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println("read failed:", err)
		return 1
	}
	fmt.Print(line)
	return 0
}

// probe tries one thing and says how it went.
func probe(spec string) string {
	kind, addr, _ := strings.Cut(spec, ":")
	if kind == "nd6" {
		return sendND(addr)
	}
	if kind == "dns" {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, addr)
		if err != nil {
			conf, _ := os.ReadFile("/etc/resolv.conf")
			return "fail " + err.Error() + " (resolv.conf: " + strings.ReplaceAll(string(conf), "\n", "; ") + ")"
		}
		return "ok " + strings.Join(addrs, ",")
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	if a, src, ok := strings.Cut(addr, "~"); ok {
		ip, err := netip.ParseAddr(src)
		if err != nil {
			return "fail " + err.Error()
		}
		addr = a
		if kind == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: ip.AsSlice()}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: ip.AsSlice()}
		}
	}
	c, err := d.Dial(kind, addr)
	if err != nil {
		return "fail " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if kind == "udp" {
		_, _ = c.Write([]byte("hi\n"))
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "fail " + err.Error()
	}
	return "ok " + strings.TrimSpace(line)
}

// hold keeps a session with an echo server busy (a line every 100 ms)
// until it breaks (exit 0, "cut") or seconds pass (exit 1, "held").
func hold(addr, seconds string) int {
	n, _ := strconv.Atoi(seconds)
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		fmt.Println("connect failed:", err)
		return 2
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // the greeting
		fmt.Println("no greeting:", err)
		return 2
	}
	fmt.Println("connected")
	end := time.Now().Add(time.Duration(n) * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := fmt.Fprintf(c, "ping %d\n", i); err != nil {
			fmt.Println("cut:", err)
			return 0
		}
		if _, err := r.ReadString('\n'); err != nil {
			fmt.Println("cut:", err)
			return 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Println("held")
	return 1
}

// hammer waits 1.5 s (dockmoat sees the container start), then opens a
// TCP connection to addr every 20 ms for seconds and prints how many got
// through: "through N of M".
func hammer(addr, seconds string) {
	n, _ := strconv.Atoi(seconds)
	time.Sleep(1500 * time.Millisecond)
	through, tries := 0, 0
	for end := time.Now().Add(time.Duration(n) * time.Second); time.Now().Before(end); tries++ {
		if c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond); err == nil {
			through++
			c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("through %d of %d\n", through, tries)
}

// serveDNS answers A queries with 192.0.2.99 (others with no answer),
// over UDP and TCP: the upstream resolver of the egress tests. addr is
// ADDR:PORT: a server on a wildcard socket would answer from the
// interface's first address, which the asking socket ignores.
func serveDNS(addr string) {
	pc, err := net.ListenPacket("udp", addr)
	exitOn("listen udp", err)
	l, err := net.Listen("tcp", addr)
	exitOn("listen tcp", err)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				continue
			}
			go func() {
				defer c.Close()
				var n uint16
				if binary.Read(c, binary.BigEndian, &n) != nil {
					return
				}
				q := make([]byte, n)
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				if a := dnsAnswer(q); a != nil {
					_, _ = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(a))), a...))
				}
			}()
		}
	}()
	buf := make([]byte, 1500)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		if a := dnsAnswer(buf[:n]); a != nil {
			_, _ = pc.WriteTo(a, addr)
		}
	}
}

// dnsAnswer builds the reply to one query: the question echoed, and one
// A record for an A query.
func dnsAnswer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	end := i + 5
	qtype := binary.BigEndian.Uint16(q[i+1:])
	out := append([]byte(nil), q[:2]...)
	out = append(out, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0)
	out = append(out, q[12:end]...)
	if qtype == 1 {
		out[7] = 1
		out = append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 99)
	}
	return out
}

// exitOn ends the server when it cannot listen: a test then sees it gone.
func exitOn(what string, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, what+":", err)
		os.Exit(1)
	}
}

// sendND sends three ICMPv6 neighbour solicitations, with the hop limit
// 255 that neighbour discovery uses, straight to addr (not a neighbour):
// a packet a deny container might use as a one-way channel out. The
// kernel fills in the checksum of a raw ICMPv6 socket.
func sendND(addr string) string {
	dst, err := netip.ParseAddr(addr)
	if err != nil {
		return "fail " + err.Error()
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
	if err != nil {
		return "fail " + err.Error()
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 255); err != nil {
		return "fail " + err.Error()
	}
	// Type 135, code 0, checksum, reserved, the target address, then a
	// nonce option (RFC 3971) the receiving test recognises.
	msg := append(append([]byte{135, 0, 0, 0, 0, 0, 0, 0}, dst.AsSlice()...), 14, 1, 'd', 'm', 'o', 'a', 't', '!')
	to := &unix.SockaddrInet6{Addr: dst.As16()}
	for range 3 {
		if err := unix.Sendto(fd, msg, 0, to); err != nil {
			return "fail " + err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "ok sent"
}
