package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/dockerwatch"
)

// DetectBackend tells whether Docker uses its iptables or its nftables
// firewall backend: Docker's /info says so (API 1.49+); at boot, before
// Docker runs (dockmoat guard), daemon.json tells; last, the ruleset does
// (Docker's nftables backend keeps its rules in table ip docker-bridges).
func DetectBackend(ctx context.Context, flag string) (string, string, error) {
	if flag == "iptables" { // nothing to ask Docker (it may not run yet)
		return flag, "backend set by --backend", nil
	}
	var info system.Info
	infoErr := errors.New("no Docker client")
	if cli, err := dockerwatch.NewClient(); err == nil {
		ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var res client.SystemInfoResult
		res, infoErr = cli.Info(ictx, client.InfoOptions{})
		cancel()
		info = res.Info
		_ = cli.Close()
	}
	backend, why, err := chooseBackend(ctx, flag, info, infoErr)
	if err != nil {
		return "", "", err
	}
	if infoErr == nil {
		if err := refuseSwarmNFT(backend, why, info.Swarm.LocalNodeState); err != nil {
			return "", "", err
		}
	}
	return backend, why, nil
}

// refuseSwarmNFT refuses the nftables backend on a Swarm node: Docker
// writes Swarm's rules (routing mesh, gateway bridge) with iptables only,
// and Docker 29 refuses to start with both Swarm and its nftables backend
// (moby#50467); dockmoat's table would filter none of them.
func refuseSwarmNFT(backend, why string, state swarm.LocalNodeState) error {
	if backend != "nftables" || state != swarm.LocalNodeStateActive {
		return nil
	}
	return fmt.Errorf("this node is in a Swarm, and dockmoat would use its nftables backend (%s): Docker supports Swarm only "+
		"with its iptables firewall backend, and so does dockmoat; run Docker with the iptables backend "+
		"(no \"firewall-backend\": \"nftables\" in daemon.json) and dockmoat with --backend auto", why)
}

// chooseBackend decides from the flag, then Docker's /info, daemon.json
// and the ruleset.
func chooseBackend(ctx context.Context, flag string, info system.Info, infoErr error) (string, string, error) {
	switch flag {
	case "iptables", "nftables":
		return flag, "backend set by --backend", nil
	case "auto":
	default:
		return "", "", fmt.Errorf("--backend: %q is not auto, iptables or nftables", flag)
	}
	if infoErr == nil {
		if info.FirewallBackend != nil && info.FirewallBackend.Driver != "" {
			d := info.FirewallBackend.Driver
			if strings.HasPrefix(d, "nftables") {
				return "nftables", "Docker reports firewall backend " + d, nil
			}
			return "iptables", "Docker reports firewall backend " + d, nil
		}
		return "iptables", "Docker does not report a firewall backend (older than 28): iptables", nil
	}
	if data, err := os.ReadFile("/etc/docker/daemon.json"); err == nil {
		var cfg struct {
			FirewallBackend string `json:"firewall-backend"`
		}
		if json.Unmarshal(data, &cfg) == nil && cfg.FirewallBackend != "" {
			return cfg.FirewallBackend, "/etc/docker/daemon.json sets firewall-backend " + cfg.FirewallBackend, nil
		}
	}
	if out, err := exec.CommandContext(ctx, "nft", "list", "tables").Output(); err == nil && strings.Contains(string(out), "docker-bridges") {
		return "nftables", "found Docker's table docker-bridges", nil
	}
	return "iptables", "Docker unreachable; assuming the iptables backend", nil
}
