package ipt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"golang.org/x/sys/unix"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/nfgen"
)

// IPTables is the part of go-iptables dockmoat uses: the hook rule in
// DOCKER-USER and probes. Everything else goes through Restorer in one
// batch. Declared here so tests can use a fake (see FakeTables).
type IPTables interface {
	Insert(table, chain string, pos int, rulespec ...string) error
	Delete(table, chain string, rulespec ...string) error
	DeleteById(table, chain string, id int) error
	List(table, chain string) ([]string, error)
}

// Restorer reads a table in one listing and applies changes in one batch.
type Restorer interface {
	// Save returns `iptables-save -t TABLE` output.
	Save(ctx context.Context, table string) ([]byte, error)
	// Restore feeds `iptables-restore --noflush`; all or nothing.
	Restore(ctx context.Context, data []byte) error
}

// Tables is one address family's netfilter access: go-iptables for the
// hook, save/restore for everything else. All four come from the same
// iptables variant (nft or legacy), so dockmoat never writes into the
// variant Docker does not use.
type Tables struct {
	IPTables
	Restorer
	// Tool names the binaries for logs ("iptables-nft", "ip6tables-legacy"…).
	Tool string
	// Generation, where the tables live in nf_tables, reads the ruleset
	// generation (nfgen.Read), which any committed change moves; the
	// backend then lists only after a change. nil: list on every pass
	// (legacy tables, which have no generation).
	Generation func() (uint32, error)
	// Changes, with Generation, follows the namespace's nf_tables
	// notifications (nfgen.Changes): a listing stays good across
	// generations that changed nothing it reads (Docker's own chains, the
	// nat table, another family). nil: any new generation means a new
	// listing.
	Changes ChangeLog
}

// ChangeLog tells whether anything a listing reads was committed after
// generation from, up to generation to (nfgen.Changes.Quiet).
type ChangeLog interface {
	Quiet(from, to uint32) bool
}

// Exec runs the real iptables binaries of one variant.
type Exec struct {
	SaveBin, RestoreBin string // binary paths, e.g. iptables-nft-save
}

// Save implements Restorer.
func (e Exec) Save(ctx context.Context, table string) ([]byte, error) {
	return e.save(ctx, "-t", table)
}

func (e Exec) save(ctx context.Context, args ...string) ([]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.SaveBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", e.SaveBin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// Restore implements Restorer. -w waits for the xtables lock (legacy) so a
// busy lock is retried by iptables itself, never mistaken for success.
func (e Exec) Restore(ctx context.Context, data []byte) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.RestoreBin, "--noflush", "-w", "5")
	cmd.Stdin, cmd.Stderr = bytes.NewReader(data), &stderr
	if err := cmd.Run(); err != nil {
		return &netfilter.RestoreError{Cmd: e.RestoreBin + " --noflush", Err: err, Stderr: strings.TrimSpace(stderr.String()), Input: string(data)}
	}
	return nil
}

// Variant is one iptables flavour: "nft" or "legacy".
type Variant string

const (
	VariantNFT    Variant = "nft"
	VariantLegacy Variant = "legacy"
)

// NewTables builds Tables for a variant and family (4 or 6).
func NewTables(v Variant, family int) (*Tables, error) {
	base := "iptables"
	proto := iptables.ProtocolIPv4
	if family == 6 {
		base, proto = "ip6tables", iptables.ProtocolIPv6
	}
	bin := base + "-" + string(v)
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("finding %s: %w", bin, err)
	}
	save, err := exec.LookPath(base + "-" + string(v) + "-save")
	if err != nil {
		// Debian's legacy save is called iptables-legacy-save; nft's is
		// iptables-nft-save. Both follow base-variant-save.
		return nil, fmt.Errorf("finding %s-%s-save: %w", base, v, err)
	}
	restore, err := exec.LookPath(base + "-" + string(v) + "-restore")
	if err != nil {
		return nil, fmt.Errorf("finding %s-%s-restore: %w", base, v, err)
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(path), iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("initialising go-iptables for %s: %w", path, err)
	}
	t := &Tables{IPTables: ipt, Restorer: Exec{SaveBin: save, RestoreBin: restore}, Tool: bin}
	if v == VariantNFT {
		t.Generation = nfgen.Read
		nfproto := uint8(unix.NFPROTO_IPV4)
		if family == 6 {
			nfproto = unix.NFPROTO_IPV6
		}
		// Without notifications every new generation is listed: slower,
		// not wrong.
		if c, err := nfgen.Subscribe(observed(nfproto)); err == nil {
			t.Changes = c
		}
	}
	return t, nil
}

// observed says whether a change can alter what a listing of this
// family's filter table tells the backend (iptplan.ObserveFilter): which
// chains exist, the rules of FORWARD, INPUT, DOCKER-USER and its own.
func observed(nfproto uint8) func(nfgen.Change) bool {
	return func(c nfgen.Change) bool {
		if c.Table == "" || c.Family == unix.NFPROTO_UNSPEC {
			return true // cannot tell
		}
		if c.Family != nfproto || c.Table != "filter" {
			return false
		}
		return !c.Rule || c.Chain == "FORWARD" || c.Chain == iptplan.InputHookChain ||
			c.Chain == iptplan.HookChain || iptplan.IsOwnedChain(c.Chain)
	}
}

// legacyLoaded reports whether this network namespace has a legacy
// (x_tables) table of that name. Unreadable means unknown: look.
func legacyLoaded(table string) bool {
	data, err := os.ReadFile("/proc/net/ip_tables_names")
	if err != nil {
		return true
	}
	return slices.Contains(strings.Fields(string(data)), table)
}

// DetectVariant finds which iptables variant holds Docker's rules, by
// looking for Docker's chains in each variant's filter table, then in its
// nat table (a foreign restore of the filter table removes Docker's
// chains there, while its DNAT stays). When both or neither hold them it
// prefers nft, the default on current distributions, and says so in the
// returned note.
func DetectVariant(ctx context.Context) (Variant, string, error) {
	has := map[Variant]bool{}
	var found []Variant
	for _, v := range []Variant{VariantNFT, VariantLegacy} {
		save, err := exec.LookPath("iptables-" + string(v) + "-save")
		if err != nil {
			continue
		}
		found = append(found, v)
		for _, table := range []string{"filter", "nat"} {
			if v == VariantLegacy && !legacyLoaded(table) {
				// Reading would instantiate an empty legacy table in
				// this namespace; there is nothing of Docker's to find.
				continue
			}
			out, err := Exec{SaveBin: save}.Save(ctx, table)
			if err == nil && (bytes.Contains(out, []byte("\n:DOCKER-USER ")) || bytes.Contains(out, []byte("\n:DOCKER "))) {
				has[v] = true
				break
			}
		}
	}
	switch {
	case len(found) == 0:
		return "", "", errors.New("neither iptables-nft-save nor iptables-legacy-save found: install iptables")
	case has[VariantNFT] && has[VariantLegacy]:
		return VariantNFT, "Docker chains found in both iptables-nft and iptables-legacy; using nft (override with --iptables-mode)", nil
	case has[VariantNFT]:
		return VariantNFT, "Docker chains found in iptables-nft", nil
	case has[VariantLegacy]:
		return VariantLegacy, "Docker chains found in iptables-legacy", nil
	default:
		return found[0], "no Docker chains found yet; defaulting to iptables-" + string(found[0]), nil
	}
}
