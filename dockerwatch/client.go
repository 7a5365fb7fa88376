package dockerwatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Client is Docker's Go SDK client plus the one read its types cannot
// make: Docker 20.10's verbose view of the ingress network lists a
// service "" with VIP "<nil>", which the SDK's netip.Addr refuses, so
// the whole inspect fails. IngressView reads the same endpoint and keeps
// only the services' names and published ports, and the peers.
type Client struct {
	*client.Client
}

// Ingress is what a node knows of the routing mesh: the published ports
// ("Target: 80, Publish: 8080") of each service, and the cluster's nodes
// (the network's peers).
type Ingress struct {
	Services map[string][]string
	Peers    []netip.Addr
}

// IngressView reads the verbose view of a swarm-scoped network;
// errdefs.IsNotFound when the network does not exist.
func (c Client) IngressView(ctx context.Context, network string) (Ingress, error) {
	dial := c.Dialer()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}}
	defer hc.CloseIdleConnections()
	path := "/networks/" + url.PathEscape(network) + "?verbose=true"
	if v := c.ClientVersion(); v != "" {
		path = "/v" + v + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return Ingress{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Ingress{}, fmt.Errorf("inspecting network %s: %w", network, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return Ingress{}, errdefs.ErrNotFound.WithMessage("network " + network)
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Ingress{}, fmt.Errorf("inspecting network %s: %s: %s", network, resp.Status, msg)
	}
	return decodeIngress(resp.Body)
}

func decodeIngress(r io.Reader) (Ingress, error) {
	var v struct {
		Services map[string]struct {
			Ports []string `json:"Ports"`
		} `json:"Services"`
		Peers []struct {
			IP string `json:"IP"`
		} `json:"Peers"`
	}
	if err := json.NewDecoder(r).Decode(&v); err != nil {
		return Ingress{}, fmt.Errorf("reading the ingress network: %w", err)
	}
	out := Ingress{Services: map[string][]string{}}
	for name, svc := range v.Services {
		out.Services[name] = svc.Ports
	}
	for _, p := range v.Peers {
		if a, err := netip.ParseAddr(p.IP); err == nil {
			out.Peers = append(out.Peers, a.Unmap())
		}
	}
	return out, nil
}
