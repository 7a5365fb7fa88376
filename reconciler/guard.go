package reconciler

import (
	"context"
	"fmt"
	"strings"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// Guard installs the boot-time default deny (rules.BuildGuard) before
// Docker starts: it creates DOCKER-USER and FORWARD's jump to it when
// Docker has not yet (Docker keeps an existing DOCKER-USER and re-inserts
// its own jump), then dockmoat's chains and the hook. When dockmoat's
// protection is already installed it does nothing, so a late guard never
// replaces the exact ruleset of a running dockmoat with the coarse one.
func (r *Reconciler) Guard(ctx context.Context, cfg config.Config) ([]string, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nft != nil {
		return r.guardNFT(ctx, cfg)
	}
	var done []string
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		t := r.families[fam]
		if t == nil {
			continue
		}
		obs, err := r.observe(ctx, fam)
		if err != nil {
			return done, err
		}
		_, hasMain := obs.Owned[rules.ChainMain]
		_, hasIngress := obs.Owned[rules.ChainIngress]
		if len(obs.Hook) > 0 && hasMain && hasIngress {
			done = append(done, fam.String()+": protection already installed; left as it is")
			continue
		}
		rs := rules.BuildGuard(cfg, fam)
		var b strings.Builder
		b.WriteString("*filter\n")
		if !obs.Chains[rules.HookChain] {
			b.WriteString(":" + rules.HookChain + " - [0:0]\n")
		}
		body := rs.RestoreLines([]string{rules.ChainMain, rules.ChainIngress})
		body = strings.TrimPrefix(body, "*filter\n")
		body = strings.TrimSuffix(body, "COMMIT\n")
		b.WriteString(body)
		if !obs.Chains[rules.HookChain] {
			b.WriteString("-I FORWARD 1 -j " + rules.HookChain + "\n")
		}
		b.WriteString("COMMIT\n")
		if err := t.Restore(ctx, []byte(b.String())); err != nil {
			return done, fmt.Errorf("%s: installing guard chains: %w", fam, err)
		}
		if err := ensureHook(t, rules.HookChain); err != nil {
			return done, fmt.Errorf("%s: %w", fam, err)
		}
		done = append(done, fam.String()+": guard installed (new connections to containers dropped until dockmoat run)")
	}
	return done, nil
}
