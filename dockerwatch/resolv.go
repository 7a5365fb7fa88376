package dockerwatch

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Where Docker reads the host's resolvers: the resolv.conf, or, when it
// names only systemd-resolved's stub (127.0.0.53), the file that lists
// the stub's own upstreams, as dockerd does. Docker's embedded resolver
// forwards containers' queries to those servers from the container's
// network namespace up to Docker 25 (so egress rules see them:
// rules/egress.go), from the host's from Docker 26 on (measured on 20.10,
// 28 and 29: TestEgress).
const (
	ResolvConf        = "/etc/resolv.conf"
	systemdResolvConf = "/run/systemd/resolve/resolv.conf"
	systemdStub       = "127.0.0.53"
)

// HostResolvers reads the resolvers Docker forwards containers' DNS
// queries to, from path ("" = /etc/resolv.conf).
func HostResolvers(path string) ([]netip.Addr, error) {
	if path == "" {
		path = ResolvConf
	}
	servers, err := readNameservers(path)
	if err != nil {
		return nil, err
	}
	if len(servers) == 1 && servers[0].String() == systemdStub {
		if up, err := readNameservers(systemdResolvConf); err == nil && len(up) > 0 {
			return up, nil
		}
	}
	return servers, nil
}

func readNameservers(path string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the host's resolvers: %w", err)
	}
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		// A link-local IPv6 server may carry a zone (fe80::1%eth0),
		// which no rule can name: the address alone.
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		if a = a.Unmap().WithZone(""); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}
