// Package nft is dockmoat's backend for Docker's nftables firewall
// backend: it owns the table inet dockmoat, and nothing else, and replaces
// it in one nft transaction whenever a chain or set of it differs from the
// policy (Render). It reads the kernel's tables as data (`nft -j`, through
// netfilter/nftjson), never by scraping nft's text.
package nft

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
)

// Runner runs the nft binary; a fake implements it in tests.
type Runner interface {
	// List reads table inet dockmoat (an empty Listing when it does not
	// exist).
	List(ctx context.Context) (Listing, error)
	// Apply runs an nft script as one transaction (all or nothing).
	Apply(ctx context.Context, script string) error
}

// Listing is what the kernel holds of table inet dockmoat, its check
// table (chains named "dockmoat_check/CHAIN") and table bridge dockmoat
// ("bridge dockmoat/CHAIN"): per chain the
// hashes of its rules in order ("" for a rule without dockmoat's comment:
// someone else's rule in our chain), per set its elements as nft writes
// them in a script ("172.17.0.2 . tcp . 80").
type Listing struct {
	Chains map[string][]string
	Sets   map[string][]string
}

// Exists reports whether the table exists.
func (l Listing) Exists() bool {
	for name := range l.Chains {
		if !strings.Contains(name, "/") {
			return true
		}
	}
	return false
}

// Exec runs /usr/sbin/nft (or Bin). BridgeOnly lists table bridge
// dockmoat alone (NewBridgeLayer's runner: one nft run, not three).
type Exec struct {
	Bin        string
	BridgeOnly bool
}

func (e Exec) bin() string {
	if e.Bin != "" {
		return e.Bin
	}
	return "nft"
}

// List implements Runner with `nft -j list table` of both tables.
func (e Exec) List(ctx context.Context) (Listing, error) {
	l := Listing{}
	tables := [][2]string{{TableFamily, TableName}, {TableFamily, CheckTable}, {TableFamily, BanTable}, {BridgeFamily, BridgeName}}
	if e.BridgeOnly {
		tables = tables[3:]
	}
	for _, table := range tables {
		var out, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, e.bin(), "-j", "list", "table", table[0], table[1])
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			if strings.Contains(stderr.String(), "No such file or directory") {
				continue
			}
			return Listing{}, fmt.Errorf("nft -j list table %s %s: %w: %s", table[0], table[1], err, strings.TrimSpace(stderr.String()))
		}
		part, err := ParseJSON(out.Bytes())
		if err != nil {
			return Listing{}, err
		}
		l.merge(part)
	}
	return l, nil
}

func (l *Listing) merge(o Listing) {
	if l.Chains == nil {
		l.Chains, l.Sets = map[string][]string{}, map[string][]string{}
	}
	maps.Copy(l.Chains, o.Chains)
	maps.Copy(l.Sets, o.Sets)
}

// Apply implements Runner.
func (e Exec) Apply(ctx context.Context, script string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.bin(), "-f", "-")
	cmd.Stdin, cmd.Stderr = strings.NewReader(script), &stderr
	if err := cmd.Run(); err != nil {
		return &netfilter.RestoreError{Cmd: "nft -f", Err: err, Stderr: strings.TrimSpace(stderr.String()), Input: script}
	}
	return nil
}

// ParseJSON reads `nft -j list table inet dockmoat` output (see nftjson.Ruleset).
func ParseJSON(data []byte) (Listing, error) {
	live, err := nftjson.Parse(data)
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Chains: map[string][]string{}, Sets: map[string][]string{}}
	for _, c := range live.Chains {
		var name string
		switch {
		case c.Family == TableFamily && c.Table == TableName:
			name = c.Name
		case c.Family == TableFamily && c.Table == CheckTable:
			name = CheckTable + "/" + c.Name
		case c.Family == TableFamily && c.Table == BanTable:
			name = BanTable + "/" + c.Name
		case c.Family == BridgeFamily && c.Table == BridgeName:
			name = bridgeKey + "/" + c.Name
		default:
			continue
		}
		hashes := []string{}
		for _, r := range c.Rules {
			hashes = append(hashes, ruleHash(r.Comment))
		}
		l.Chains[name] = hashes
	}
	for _, s := range live.Sets {
		if s.Family != TableFamily || s.Table != TableName {
			continue
		}
		elems := []string{}
		for _, e := range s.Elems {
			elems = append(elems, nftjson.ValueText(e))
		}
		l.Sets[s.Name] = elems
	}
	return l, nil
}

// ruleHash is the hash in a dockmoat comment ("dockmoat:<16 hex> …").
func ruleHash(comment string) string {
	rest, ok := strings.CutPrefix(comment, rules.CommentPrefix)
	if !ok || len(rest) < 16 {
		return ""
	}
	return rest[:16]
}
