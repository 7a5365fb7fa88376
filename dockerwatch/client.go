package dockerwatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Client is Docker's Go SDK client plus the one read its types cannot
// make: Docker 20.10's verbose view of the ingress network lists a
// service "" with VIP "<nil>", which the SDK's netip.Addr refuses, so
// the whole inspect fails. IngressServicePorts reads the same endpoint
// and keeps only the services' names and published ports.
type Client struct {
	*client.Client
}

// IngressServicePorts returns the published ports ("Target: 80, Publish:
// 8080") of each service on a swarm-scoped network, as this node knows
// them; errdefs.IsNotFound when the network does not exist.
func (c Client) IngressServicePorts(ctx context.Context, network string) (map[string][]string, error) {
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
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("inspecting network %s: %w", network, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, errdefs.ErrNotFound.WithMessage("network " + network)
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("inspecting network %s: %s: %s", network, resp.Status, msg)
	}
	var v struct {
		Services map[string]struct {
			Ports []string `json:"Ports"`
		} `json:"Services"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("inspecting network %s: %w", network, err)
	}
	out := map[string][]string{}
	for name, svc := range v.Services {
		out[name] = svc.Ports
	}
	return out, nil
}
