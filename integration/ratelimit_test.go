package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// outsideC6 is an IPv6 source in another /64 than A6 and B6, added to
// the outside for the rate limit test (the limit counts per /64).
var outsideC6 = netip.MustParseAddr("2001:db8:2::10")

// rateLimited: a port limited to 3 new connections per source an hour
// (burst 3) answers a source three times, then refuses it, while another
// source gets through and the first source's open session goes on; TCP
// and UDP each have their own budget. Over IPv6 the limit is per /64:
// B6, in A6's /64, is refused with it, a source in another /64 is not.
// Then audit names the installed limit. The positive controls are the
// first three answers and the other source's. network "" is the default
// bridge; an IPv4-only one puts IPv6 clients on the docker-proxy path.
func rateLimited(t *testing.T, e *env, port int, six bool, network string) {
	p := strconv.Itoa(port)
	e.run(t, testbed.Spec{Name: "limited" + p, Network: network, Labels: map[string]string{"dockmoat.allow": p, "dockmoat.limit." + p: "3/hour,burst=3"},
		Publish: []string{p + ":80", p + ":53/udp"}, Serve: []string{"80/echo", "53/udp"}})
	e.sync(t)
	src, other, dst := A, B, testbed.HostIP
	if six {
		src, other, dst = A6, outsideC6, testbed.HostIP6
		addOutsideC6(t, e)
	}
	to := netip.AddrPortFrom(dst, uint16(port))
	once := func(proto string, from netip.Addr, open bool) {
		t.Helper()
		timeout := closedTimeout
		if open {
			timeout = 3 * time.Second
		}
		answer, err := testbed.Try(e.ctx, e.bed.OutNSPath(), testbed.Probe{Proto: proto, Src: from, Dst: to}, timeout)
		if open && err != nil {
			t.Errorf("%s %s -> %s: want an answer, got %v", proto, from, to, err)
		}
		if !open && err == nil {
			t.Errorf("%s %s -> %s: want refused beyond the limit, but it answered %q", proto, from, to, answer)
		}
	}
	session := holdSession(t, e, src, to) // the first of src's three
	defer session.Close()
	once("tcp", src, true)
	once("tcp", src, true)
	once("tcp", src, false)
	if six {
		once("tcp", B6, false) // the same /64
	}
	once("tcp", other, true)
	if err := echo(session); err != nil {
		t.Errorf("the session opened before the limit was cut: %v", err)
	}
	for range 3 {
		once("udp", src, true)
	}
	once("udp", src, false)
	once("udp", other, true)
	refusedCounted(t, e, port, six)
	rep, _ := auditJSON(t, e, e.dm.Config)
	found := false
	for _, r := range rep.Rows {
		if r.HostPort == uint16(port) && strings.Contains(r.HostIP, ":") == six {
			found = true
			if r.RateLimit != "3/hour,burst=3" || !strings.Contains(r.Reason, "per source are refused") {
				t.Errorf("audit row %s %d/%s: rate limit %q, reason %q", r.HostIP, r.HostPort, r.Proto, r.RateLimit, r.Reason)
			}
		}
	}
	if !found {
		t.Errorf("audit has no row for port %d", port)
	}
}

// holdSession opens a TCP session from src and reads its greeting; the
// server echoes every line after it.
func holdSession(t *testing.T, e *env, src netip.Addr, to netip.AddrPort) net.Conn {
	t.Helper()
	var c net.Conn
	err := testbed.InNetns(e.bed.OutNSPath(), func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 3 * time.Second}
		var err error
		if c, err = d.DialContext(e.ctx, "tcp", to.String()); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	if err != nil {
		t.Fatalf("a session from %s to %s: %v", src, to, err)
	}
	return c
}

// echo sends a line on an echo session and reads it back.
func echo(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(c, "still here"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil && line != "still here\n" {
		err = fmt.Errorf("echoed %q", line)
	}
	return err
}

// addOutsideC6 puts outsideC6 on the outside link, with the host's route
// back to its /64 (on the link), for the rest of the test.
func addOutsideC6(t *testing.T, e *env) {
	t.Helper()
	link, err := exec.Command("ip", "-n", e.bed.OutNS, "-o", "-6", "addr", "show", "to", testbed.OutsideA6.String()+"/128").Output()
	if err != nil || len(strings.Fields(string(link))) < 2 {
		t.Fatalf("the outside link: %v %q", err, link)
	}
	dev := strings.Fields(string(link))[1]
	hostLink, err := exec.Command("ip", "-n", e.bed.HostNS, "-o", "-6", "addr", "show", "to", testbed.HostIP6.String()+"/128").Output()
	if err != nil || len(strings.Fields(string(hostLink))) < 2 {
		t.Fatalf("the host link: %v %q", err, hostLink)
	}
	hostDev := strings.Fields(string(hostLink))[1]
	steps := [][]string{
		{"ip", "-n", e.bed.OutNS, "addr", "add", outsideC6.String() + "/64", "dev", dev, "nodad"},
		{"ip", "-n", e.bed.HostNS, "-6", "route", "add", "2001:db8:2::/64", "dev", hostDev},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", s, err, out)
		}
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "-n", e.bed.HostNS, "-6", "route", "del", "2001:db8:2::/64").Run()
		_ = exec.Command("ip", "-n", e.bed.OutNS, "addr", "del", outsideC6.String()+"/64", "dev", dev).Run()
	})
}

// refusedCounted: /metrics counts the refusals of the port's limit, per
// protocol, in the family.
func refusedCounted(t *testing.T, e *env, port int, six bool) {
	t.Helper()
	fam := `family="ipv4"`
	if six {
		fam = `family="ipv6"`
	}
	_, body := e.scrape(t, testbed.MetricsAddr, "/metrics")
	for _, proto := range []string{"tcp", "udp"} {
		var n float64
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "dockmoat_rate_limited_packets_total{") && strings.Contains(line, fam) &&
				strings.Contains(line, fmt.Sprintf(`port="%d/%s"`, port, proto)) {
				v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				n += v
			}
		}
		if n < 1 {
			t.Errorf("/metrics counts no refusal of %d/%s (%s)", port, proto, fam)
		}
	}
}
