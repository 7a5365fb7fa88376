package dockerwatch

import (
	"fmt"
	"net"
)

// HostLinks lists the names of the host's network interfaces, read beside
// Docker's view of its networks: a br-* bridge Docker does not list is the
// host's own (rules.ForeignBridges).
func HostLinks() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	names := make([]string, len(ifs))
	for i, l := range ifs {
		names[i] = l.Name
	}
	return names, nil
}
