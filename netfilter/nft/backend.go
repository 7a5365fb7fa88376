package nft

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/nfgen"
	"github.com/dockmoat/dockmoat/netfilter/nft/nftplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// tool names this backend in plans and logs.
const tool = "nftables, table inet dockmoat"

// Backend implements netfilter.Backend on table inet dockmoat. Not safe
// for concurrent use: the reconciler serialises calls.
type Backend struct {
	nft Runner
	log logrus.FieldLogger
	// want is the table the last Plan wants, for Apply; installed the
	// table last applied or found in sync (nil before the first Apply),
	// what drift is measured against and Repair puts back.
	want      nftplan.Ruleset
	installed *nftplan.Ruleset
	// layer: the table is a second layer under the iptables backend
	// (NewLayer); bridgeOnly: only table bridge dockmoat is (NewBridgeLayer).
	layer, bridgeOnly bool
	cache             *nftplan.Cache
	// listed is the last listing and listedGen the nf_tables generation
	// read just before it, where the runner tells it (Generation).
	listed    *nftplan.Listing
	listedGen uint32
	listedAt  time.Time
	// changes, where the runner tells generations, follows the nf_tables
	// notifications: a listing stays good across generations that
	// touched none of dockmoat's tables (Docker's, at a container's
	// connect), for listingAge at most.
	changes changeLog
}

// changeLog tells whether one of dockmoat's tables changed after
// generation from, up to generation to (nfgen.Changes.Quiet).
type changeLog interface {
	Quiet(from, to uint32) bool
}

// listingAge bounds how long a listing is trusted on the notifications'
// word alone.
const listingAge = 10 * time.Second

// subscribe follows the namespace's notifications where nft is the real
// one.
func subscribe(nft Runner) changeLog {
	if _, ok := nft.(Exec); !ok {
		return nil // a fake's generations are not the kernel's
	}
	c, err := nfgen.Subscribe(ownTable)
	if err != nil {
		return nil // every new generation is listed: slower, not wrong
	}
	return c
}

// ownTable says whether a change is in one of the tables a listing reads.
func ownTable(c nfgen.Change) bool {
	switch c.Family {
	case unix.NFPROTO_INET:
		return c.Table == nftplan.TableName || c.Table == nftplan.CheckTable || c.Table == nftplan.BanTable || c.Table == ""
	case unix.NFPROTO_BRIDGE:
		return c.Table == nftplan.BridgeName || c.Table == ""
	case unix.NFPROTO_IPV4, unix.NFPROTO_IPV6, unix.NFPROTO_ARP, unix.NFPROTO_NETDEV:
		return c.Table == ""
	}
	return true // cannot tell
}

// generations is a Runner that tells the nf_tables generation (Exec,
// through nfgen): a listing read after it is exact until it moves.
type generations interface {
	Generation() (uint32, error)
}

// New returns the backend for Docker's nftables firewall backend.
func New(nft Runner, log logrus.FieldLogger) *Backend {
	return &Backend{nft: nft, log: log, cache: nftplan.NewCache(), changes: subscribe(nft)}
}

// NewLayer returns the table as a second layer of the policy on an
// iptables host whose iptables rules someone else flushes (firewalld:
// netfilter.Layered). Its plan reports every published port as served
// by docker-proxy: under it, Docker's DNAT rules may be flushed at any
// moment.
func NewLayer(nft Runner, log logrus.FieldLogger) *Backend {
	return &Backend{nft: nft, log: log, layer: true, cache: nftplan.NewCache(), changes: subscribe(nft)}
}

// NewBridgeLayer returns table bridge dockmoat alone (BridgeTable), as a
// layer under the iptables backend, which has no way of its own to bind a
// deny container to its addresses (iptables' physdev match needs
// br_netfilter, which Docker 27.3 and later do not load).
func NewBridgeLayer(nft Runner, log logrus.FieldLogger) *Backend {
	if e, ok := nft.(Exec); ok {
		e.BridgeOnly = true
		nft = e
	}
	return &Backend{nft: nft, log: log, layer: true, bridgeOnly: true, changes: subscribe(nft)}
}

// list reads dockmoat's tables, or reuses the last listing while the
// nf_tables generation has not moved since it was read (no one, dockmoat
// included, committed anything since), or while the notifications show
// that none of dockmoat's tables changed (changes; Docker's connect of a
// container moves the generation with its own tables): a pass with
// nothing to do, a pass at a connect, or the drift watch's check after
// someone else's table changed, execs no nft. Every transaction of
// dockmoat's own moves the generation too, in its own tables.
func (b *Backend) list(ctx context.Context) (nftplan.Listing, error) {
	g, ok := b.nft.(generations)
	if !ok {
		return b.listAll(ctx)
	}
	gen, err := g.Generation()
	if err == nil && b.listed != nil && (b.listedGen == gen || b.quiet(gen)) {
		b.listedGen = gen
		return *b.listed, nil
	}
	b.listed = nil
	l, lerr := b.listAll(ctx)
	if lerr == nil && err == nil {
		b.listed, b.listedGen, b.listedAt = &l, gen, time.Now()
	}
	return l, lerr
}

// quiet: the notifications prove the listing still good at generation gen.
func (b *Backend) quiet(gen uint32) bool {
	return b.changes != nil && time.Since(b.listedAt) < listingAge && b.changes.Quiet(b.listedGen, gen)
}

// listAll runs the listing; the bridge layer sees only its own table.
func (b *Backend) listAll(ctx context.Context) (nftplan.Listing, error) {
	l, err := b.nft.List(ctx)
	if err != nil || !b.bridgeOnly {
		return l, err
	}
	own := nftplan.Listing{Chains: map[string][]string{}, Sets: map[string][]string{}}
	for name, hashes := range l.Chains {
		if strings.HasPrefix(name, nftplan.BridgeKey+"/") {
			own.Chains[name] = hashes
		}
	}
	return own, nil
}

// Notifies implements netfilter.Backend: nf_tables announces every change.
func (b *Backend) Notifies() bool { return true }

// Plan implements netfilter.Backend. The table holds both families: the
// IPv4 plan carries the whole diff and script, the IPv6 plan its policy.
func (b *Backend) Plan(ctx context.Context, cfg config.Config, snap rules.Snapshot, _ bool) ([]netfilter.FamilyPlan, error) {
	if b.bridgeOnly {
		return b.planBridge(ctx, cfg, snap)
	}
	rs, res := b.cache.Render(cfg, snap, b.layer)
	if !b.layer {
		rs.Ban = nftplan.BanChains(res)
	}
	listing, err := b.list(ctx)
	if err != nil {
		return nil, err
	}
	b.want = rs
	changed := nftplan.TableDiff(rs, listing.Chains, listing.Sets)
	d := &nftplan.Detail{Table: rs.Text(), Owned: listing.Chains}
	if len(changed) > 0 {
		d.Batch = rs.ReplaceScript()
	}
	p4 := netfilter.FamilyPlan{Family: rules.IPv4, Tool: tool, Result: res[0], Rules: rs, Changed: changed, Layer: b.layer, Detail: d}
	p6 := netfilter.FamilyPlan{Family: rules.IPv6, Tool: tool, Result: res[1], Layer: b.layer, Detail: &nftplan.Detail{Owned: listing.Chains}}
	return []netfilter.FamilyPlan{p4, p6}, nil
}

// planBridge is Plan for the bridge table alone: one plan, which carries
// no policy of its own (the main backend's plans do). Only the egress
// policies are computed, not the whole policy a second time.
func (b *Backend) planBridge(ctx context.Context, cfg config.Config, snap rules.Snapshot) ([]netfilter.FamilyPlan, error) {
	egress := [2][]rules.Egress{rules.EgressPolicies(cfg, snap, rules.IPv4), rules.EgressPolicies(cfg, snap, rules.IPv6)}
	rs := nftplan.Ruleset{Bridge: nftplan.BridgeChains(cfg, egress), BridgeOnly: true}
	listing := nftplan.Listing{}
	// Nothing wanted and nothing installed: no nft run on every pass of a
	// host without egress-deny containers.
	if len(rs.Bridge) > 0 || b.installed == nil || len(b.installed.Bridge) > 0 {
		var err error
		if listing, err = b.list(ctx); err != nil {
			return nil, err
		}
	}
	b.want = rs
	changed := nftplan.TableDiff(rs, listing.Chains, listing.Sets)
	d := &nftplan.Detail{Table: rs.Text(), Owned: listing.Chains}
	if len(changed) > 0 {
		d.Batch = rs.ReplaceScript()
	}
	p := netfilter.FamilyPlan{Family: rules.IPv4, Tool: "nftables, table " + nftplan.BridgeKey, Result: policy.Result{Family: rules.IPv4},
		Rules: rs, Changed: changed, Layer: true, Detail: d,
		Note: fmt.Sprintf("binds %d egress-deny container interface(s) to their own addresses", len(nftplan.DenyPorts(egress)))}
	return []netfilter.FamilyPlan{p}, nil
}

// Apply implements netfilter.Backend: one transaction replaces the table
// when anything differs.
func (b *Backend) Apply(ctx context.Context, plans []netfilter.FamilyPlan) (netfilter.Applied, error) {
	var out netfilter.Applied
	if len(plans) == 0 {
		return out, nil
	}
	p4, d := plans[0], nftplan.DetailOf(plans[0])
	if b.installed != nil {
		out.Drift = netfilter.ChainDrift(p4.Family.String()+": ", d.Owned, netfilter.HashesOf(b.installed.All()))
	}
	if d.Batch != "" {
		if err := b.nft.Apply(ctx, d.Batch); err != nil {
			return out, fmt.Errorf("replacing table inet dockmoat: %w", err)
		}
		out.Wrote = true
	}
	installed := b.want
	b.installed = &installed
	for _, p := range plans {
		out.Families = append(out.Families, netfilter.Installed{Plan: p, Changed: d.Batch != ""})
	}
	return out, nil
}

// Intact implements netfilter.Backend.
func (b *Backend) Intact(ctx context.Context) (bool, error) {
	if b.installed == nil || (b.bridgeOnly && len(b.installed.Bridge) == 0) {
		return true, nil
	}
	listing, err := b.list(ctx)
	if err != nil {
		return false, err
	}
	return netfilter.Intact(listing.Chains, netfilter.HashesOf(b.installed.All())) && len(nftplan.SetDrift(*b.installed, listing)) == 0, nil
}

// Repair implements netfilter.Backend: it puts back the last applied
// table if someone changed it.
func (b *Backend) Repair(ctx context.Context) ([]string, error) {
	if b.installed == nil || (b.bridgeOnly && len(b.installed.Bridge) == 0) {
		return nil, nil
	}
	listing, err := b.list(ctx)
	if err != nil {
		return nil, err
	}
	found := netfilter.ChainDrift(rules.IPv4.String()+": ", listing.Chains, netfilter.HashesOf(b.installed.All()))
	found = append(found, nftplan.SetDrift(*b.installed, listing)...)
	if len(found) == 0 {
		return nil, nil
	}
	if err := b.nft.Apply(ctx, b.installed.ReplaceScript()); err != nil {
		return found, fmt.Errorf("restoring table inet dockmoat: %w", err)
	}
	return found, nil
}

// Uninstall implements netfilter.Backend: it deletes both tables, the
// check table first (alone, it drops what no table marked: closed).
func (b *Backend) Uninstall(ctx context.Context) error {
	listing, err := b.list(ctx)
	if err != nil {
		return err
	}
	if len(listing.Chains) == 0 {
		return nil
	}
	tables := []string{nftplan.TableFamily + " " + nftplan.CheckTable, nftplan.TableFamily + " " + nftplan.TableName, nftplan.BridgeKey}
	if b.bridgeOnly {
		tables = tables[2:]
	} else if !b.layer {
		tables = append(tables, nftplan.TableFamily+" "+nftplan.BanTable)
	}
	if err := b.nft.Apply(ctx, nftplan.DeleteScript(tables...)); err != nil {
		return fmt.Errorf("deleting tables %s: %w", strings.Join(tables, ", "), err)
	}
	b.log.Infof("removed tables %s", strings.Join(tables, ", "))
	return nil
}

// Guard implements netfilter.Backend: the guard table, unless the table
// is already there.
func (b *Backend) Guard(ctx context.Context, cfg config.Config, boot netfilter.Boot) ([]string, error) {
	if b.bridgeOnly {
		return nil, nil // egress: no container runs before the guard
	}
	listing, err := b.list(ctx)
	if err != nil {
		return nil, err
	}
	if listing.Exists() {
		return []string{"nftables: table inet dockmoat already installed; left as it is"}, nil
	}
	if err := b.nft.Apply(ctx, nftplan.GuardTable(cfg, rules.ForeignBridges(boot.Links, nil), boot.Published).ReplaceScript()); err != nil {
		return nil, fmt.Errorf("installing the guard table: %w", err)
	}
	return []string{"nftables: guard installed (new connections to containers dropped until dockmoat run)"}, nil
}
