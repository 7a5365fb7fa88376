package reconciler

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// NFTRunner runs the nft binary; a fake implements it in tests.
type NFTRunner interface {
	// List returns `nft list table inet dockmoat`, or "" when the table
	// does not exist.
	List(ctx context.Context) (string, error)
	// Apply runs an nft script as one transaction (all or nothing).
	Apply(ctx context.Context, script string) error
}

// ExecNFT runs /usr/sbin/nft (or Bin).
type ExecNFT struct{ Bin string }

func (e ExecNFT) bin() string {
	if e.Bin != "" {
		return e.Bin
	}
	return "nft"
}

// List implements NFTRunner.
func (e ExecNFT) List(ctx context.Context) (string, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.bin(), "list", "table", rules.NFTFamily, rules.NFTTable)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "No such file or directory") {
			return "", nil
		}
		return "", fmt.Errorf("nft list table %s %s: %w: %s", rules.NFTFamily, rules.NFTTable, err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// Apply implements NFTRunner.
func (e ExecNFT) Apply(ctx context.Context, script string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.bin(), "-f", "-")
	cmd.Stdin, cmd.Stderr = strings.NewReader(script), &stderr
	if err := cmd.Run(); err != nil {
		return &RestoreError{Cmd: "nft -f", Err: err, Stderr: strings.TrimSpace(stderr.String()), Input: script}
	}
	return nil
}

var (
	nftSetRe   = regexp.MustCompile(`^\s*set (\S+) \{`)
	nftChainRe = regexp.MustCompile(`^\s*chain (\S+) \{`)
	nftHashRe  = regexp.MustCompile(`comment "` + regexp.QuoteMeta(rules.CommentPrefix) + `([0-9a-f]{16})`)
)

// ParseNFT reads the hashes of dockmoat's rules per chain from a listing.
func ParseNFT(listing string) map[string][]string {
	owned := map[string][]string{}
	chain := ""
	sc := bufio.NewScanner(strings.NewReader(listing))
	sc.Buffer(make([]byte, 64*1024), 8*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m := nftChainRe.FindStringSubmatch(line); m != nil {
			chain = m[1]
			owned[chain] = []string{}
			continue
		}
		if nftSetRe.MatchString(line) {
			chain = "" // a set's lines are not rules (see ParseNFTSets)
			continue
		}
		t := strings.TrimSpace(line)
		if chain == "" || t == "" || t == "}" || strings.HasPrefix(t, "type ") {
			continue
		}
		h := ""
		if m := nftHashRe.FindStringSubmatch(line); m != nil {
			h = m[1]
		}
		owned[chain] = append(owned[chain], h)
	}
	return owned
}

// ParseNFTSets reads the elements of each set from a listing, as nft
// prints them ("172.17.0.2 . tcp . 80"), in listing order.
func ParseNFTSets(listing string) map[string][]string {
	sets := map[string][]string{}
	name, inElems := "", false
	var text strings.Builder
	for _, line := range strings.Split(listing, "\n") {
		if m := nftSetRe.FindStringSubmatch(line); m != nil {
			name = m[1]
			sets[name] = []string{}
			continue
		}
		if name == "" {
			continue
		}
		t := strings.TrimSpace(line)
		if !inElems {
			if rest, ok := strings.CutPrefix(t, "elements = {"); ok {
				inElems = true
				text.Reset()
				t = rest
			} else {
				if t == "}" {
					name = ""
				}
				continue
			}
		}
		if before, done := strings.CutSuffix(t, "}"); done {
			text.WriteString(" " + before)
			for _, e := range strings.Split(text.String(), ",") {
				if e = strings.Join(strings.Fields(e), " "); e != "" {
					sets[name] = append(sets[name], e)
				}
			}
			inElems = false
			continue
		}
		text.WriteString(" " + t)
	}
	return sets
}

// NewNFT returns a reconciler for Docker's nftables firewall backend: it
// owns the table inet dockmoat and nothing else.
func NewNFT(nft NFTRunner, src Source, cfg config.Config, log logrus.FieldLogger) *Reconciler {
	r := New(nil, nil, src, cfg, log)
	r.nft = nft
	return r
}

func (r *Reconciler) planNFT(ctx context.Context, snap rules.Snapshot) ([]FamilyPlan, string, error) {
	rs, res := rules.BuildNFT(r.config(), snap)
	listing, err := r.nft.List(ctx)
	if err != nil {
		return nil, "", err
	}
	owned := ParseNFT(listing)
	var changed []string
	for _, ch := range rs.Chains {
		if got, ok := owned[ch.Name]; !ok || !slices.Equal(got, ch.Hashes()) {
			changed = append(changed, "inet dockmoat/"+ch.Name)
		}
	}
	if len(owned) != len(rs.Chains) && len(changed) == 0 {
		changed = append(changed, "inet dockmoat (extra chains)")
	}
	installed := ParseNFTSets(listing)
	for _, set := range rs.Sets {
		got, ok := installed[set.Name]
		if !ok || !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(set.Elems))) {
			changed = append(changed, "inet dockmoat/set "+set.Name)
		}
	}
	variant := "nftables, table inet dockmoat"
	p4 := FamilyPlan{Family: rules.IPv4, Variant: variant, Result: res[0], HookPositions: []int{1}, NFT: rs.Text(),
		Observed: Observed{Owned: owned}, Changed: changed, nftTable: true}
	if len(changed) > 0 {
		p4.Batch = rs.ReplaceScript()
	}
	p6 := FamilyPlan{Family: rules.IPv6, Variant: variant, Result: res[1], HookPositions: []int{1}, Observed: Observed{Owned: owned}, nftTable: true}
	return []FamilyPlan{p4, p6}, rs.ReplaceScript(), nil
}

func nftApplied(script string) map[string][]string {
	return ParseNFT(script)
}

func (r *Reconciler) syncNFT(ctx context.Context, snap rules.Snapshot, res *SyncResult) error {
	plans, script, err := r.planNFT(ctx, snap)
	if err != nil {
		return err
	}
	res.Plans = plans
	res.Drift, r.pendingDrift = r.pendingDrift, nil
	p4 := plans[0]
	res.Drift = append(res.Drift, drift(p4, r.applied[rules.IPv4])...)
	res.Problems = append(res.Problems, p4.Result.Problems...)
	if p4.Batch != "" {
		if err := r.nft.Apply(ctx, p4.Batch); err != nil {
			return fmt.Errorf("replacing table inet dockmoat: %w", err)
		}
		res.Applied = true
	}
	r.applied[rules.IPv4] = nftApplied(script)
	r.nftLast = script
	r.bridges = snap.Bridges
	for _, p := range plans {
		r.queueRevocation(p.Family, p.Result, p4.Batch != "", len(res.Drift) > 0)
	}
	r.report(res.Problems)
	return nil
}

// repairNFT puts back the last applied table if someone changed it.
func (r *Reconciler) repairNFT(ctx context.Context) ([]string, error) {
	if r.nftLast == "" {
		return nil, nil
	}
	listing, err := r.nft.List(ctx)
	if err != nil {
		return nil, err
	}
	p := FamilyPlan{Family: rules.IPv4, HookPositions: []int{1}, Observed: Observed{Owned: ParseNFT(listing)}}
	found := drift(p, r.applied[rules.IPv4])
	if len(found) == 0 {
		return nil, nil
	}
	if err := r.nft.Apply(ctx, r.nftLast); err != nil {
		return found, fmt.Errorf("restoring table inet dockmoat: %w", err)
	}
	r.log.WithField("found", found).Warn("drift repaired: put back the last installed rules")
	r.pendingDrift = append(r.pendingDrift, found...)
	return found, nil
}

func (r *Reconciler) uninstallNFT(ctx context.Context) error {
	listing, err := r.nft.List(ctx)
	if err != nil {
		return err
	}
	if listing == "" {
		return nil
	}
	if err := r.nft.Apply(ctx, fmt.Sprintf("delete table %s %s\n", rules.NFTFamily, rules.NFTTable)); err != nil {
		return fmt.Errorf("deleting table inet dockmoat: %w", err)
	}
	r.log.Info("removed table inet dockmoat")
	return nil
}

func (r *Reconciler) guardNFT(ctx context.Context, cfg config.Config) ([]string, error) {
	listing, err := r.nft.List(ctx)
	if err != nil {
		return nil, err
	}
	if listing != "" {
		return []string{"nftables: table inet dockmoat already installed; left as it is"}, nil
	}
	if err := r.nft.Apply(ctx, rules.BuildNFTGuard(cfg).ReplaceScript()); err != nil {
		return nil, fmt.Errorf("installing the guard table: %w", err)
	}
	return []string{"nftables: guard installed (new connections to containers dropped until dockmoat run)"}, nil
}
