// Package nft is dockmoat's backend for Docker's nftables firewall
// backend: it owns the table inet dockmoat, and nothing else, and replaces
// it in one nft transaction whenever a chain or set of it differs from the
// policy. What needs no exec (the rendering, the reading of its own tables
// from a listing, the diff) is in netfilter/nft/nftplan. It reads the
// kernel's tables as data (`nft -j`, through netfilter/nftjson), never by
// scraping nft's text.
package nft

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/nfgen"
	"github.com/dockmoat/dockmoat/netfilter/nft/nftplan"
)

// Runner runs the nft binary; a fake implements it in tests.
type Runner interface {
	// List reads table inet dockmoat (an empty Listing when it does not
	// exist).
	List(ctx context.Context) (nftplan.Listing, error)
	// Apply runs an nft script as one transaction (all or nothing).
	Apply(ctx context.Context, script string) error
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

// Generation reads the nf_tables generation (the backend lists only
// after it moved).
func (e Exec) Generation() (uint32, error) { return nfgen.Read() }

// List implements Runner with `nft -j list table` of both tables.
func (e Exec) List(ctx context.Context) (nftplan.Listing, error) {
	l := nftplan.Listing{}
	tables := [][2]string{{nftplan.TableFamily, nftplan.TableName}, {nftplan.TableFamily, nftplan.CheckTable}, {nftplan.TableFamily, nftplan.BanTable}, {nftplan.BridgeFamily, nftplan.BridgeName}}
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
			return nftplan.Listing{}, fmt.Errorf("nft -j list table %s %s: %w: %s", table[0], table[1], err, strings.TrimSpace(stderr.String()))
		}
		part, err := nftplan.ParseJSON(out.Bytes())
		if err != nil {
			return nftplan.Listing{}, err
		}
		l.Merge(part)
	}
	return l, nil
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
