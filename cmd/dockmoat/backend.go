package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/dockerwatch"
)

// detectBackend tells whether Docker uses its iptables or its nftables
// firewall backend: Docker's /info says so (API 1.49+); at boot, before
// Docker runs (dockmoat guard), daemon.json tells; last, the ruleset does
// (Docker's nftables backend keeps its rules in table ip docker-bridges).
func detectBackend(ctx context.Context, flag string) (string, string, error) {
	switch flag {
	case "iptables", "nftables":
		return flag, "backend set by --backend", nil
	case "auto":
	default:
		return "", "", fmt.Errorf("--backend: %q is not auto, iptables or nftables", flag)
	}
	if cli, err := dockerwatch.NewClient(); err == nil {
		ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
		res, err := cli.Info(ictx, client.InfoOptions{})
		cancel()
		info := res.Info
		_ = cli.Close()
		if err == nil {
			if info.FirewallBackend != nil && info.FirewallBackend.Driver != "" {
				d := info.FirewallBackend.Driver
				if strings.HasPrefix(d, "nftables") {
					return "nftables", "Docker reports firewall backend " + d, nil
				}
				return "iptables", "Docker reports firewall backend " + d, nil
			}
			return "iptables", "Docker does not report a firewall backend (older than 28): iptables", nil
		}
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
