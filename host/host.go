// Package host opens what dockmoat works on: it tells which firewall
// backend Docker uses, opens that backend (the iptables variant and
// tables, ipsets, the nft tool, the firewalld and bridge layers) and the
// Docker client, and wires them to a reconciler; and it collects the live
// state that audit evaluates. The daemon and the one-shot commands (plan,
// guard, uninstall, audit) open the host the same way through it.
package host

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/dockerwatch"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipset"
	"github.com/dockmoat/dockmoat/netfilter/ipt"
	"github.com/dockmoat/dockmoat/netfilter/nft"
	"github.com/dockmoat/dockmoat/reconciler"
	"github.com/dockmoat/dockmoat/rules"
)

// Options are the command-line choices that decide how the host is opened.
type Options struct {
	Backend      string // --backend: auto, iptables or nftables
	IptablesMode string // --iptables-mode: auto, nft or legacy
	IPv6         bool   // --ipv6: manage ip6tables too
}

// tables picks the iptables variant and opens each family's tables,
// plus the Docker watcher.
func tables(ctx context.Context, opt Options, log *logrus.Logger) (map[rules.Family]*ipt.Tables, *dockerwatch.Watcher, error) {
	var variant ipt.Variant
	switch opt.IptablesMode {
	case "auto":
		v, why, err := ipt.DetectVariant(ctx)
		if err != nil {
			return nil, nil, err
		}
		variant = v
		log.WithField("variant", "iptables-"+string(v)).Info(why)
	case "nft", "legacy":
		variant = ipt.Variant(opt.IptablesMode)
		log.WithField("variant", "iptables-"+opt.IptablesMode).Info("iptables variant set by --iptables-mode")
	default:
		return nil, nil, fmt.Errorf("--iptables-mode: %q is not auto, nft or legacy", opt.IptablesMode)
	}
	v4, err := ipt.NewTables(variant, 4)
	if err != nil {
		return nil, nil, err
	}
	ts := map[rules.Family]*ipt.Tables{rules.IPv4: v4}
	if opt.IPv6 {
		if v6, err := ipt.NewTables(variant, 6); err != nil {
			log.WithError(err).Warn("IPv6: ip6tables not usable; managing IPv4 only")
		} else {
			ts[rules.IPv6] = v6
		}
	}
	cli, err := dockerwatch.NewClient()
	if err != nil {
		return nil, nil, err
	}
	return ts, &dockerwatch.Watcher{API: cli, Log: log}, nil
}

// Open wires a reconciler to the host: config, firewall backend (and
// iptables variant), Docker client.
func Open(ctx context.Context, opt Options, log *logrus.Logger, cfg config.Config) (*reconciler.Reconciler, *dockerwatch.Watcher, error) {
	backend, why, err := DetectBackend(ctx, opt.Backend)
	if err != nil {
		return nil, nil, err
	}
	if backend == "nftables" {
		log.WithField("backend", "nftables").Info(why + "; dockmoat uses its own table inet dockmoat")
		cli, err := dockerwatch.NewClient()
		if err != nil {
			return nil, nil, err
		}
		w := &dockerwatch.Watcher{API: cli, Log: log}
		return reconciler.New(nft.New(nft.Exec{}, log), w, cfg, log), w, nil
	}
	log.WithField("backend", "iptables").Debug(why)
	tables, w, err := tables(ctx, opt, log)
	if err != nil {
		return nil, nil, err
	}
	// Kernel ipsets for the allows; without them, one rule per allow,
	// which works everywhere and only costs more per connection as
	// ports are added.
	var sets ipt.SetStore
	if ns, err := ipset.New(); err != nil {
		if !cfg.NoIPSet {
			log.WithError(err).Warn("kernel ipsets unavailable: one iptables rule per allowed port (works, but each new connection checks the list)")
		}
	} else {
		sets = ns
	}
	var nf netfilter.Backend = ipt.New(tables[rules.IPv4], tables[rules.IPv6], sets, log)
	return reconciler.New(withFirewalldLayer(ctx, nf, log), w, cfg, log), w, nil
}
