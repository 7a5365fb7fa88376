package nft

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/nft/nftplan"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
)

// ListRuleset reads the whole ruleset: `nft -j list ruleset`.
func (e Exec) ListRuleset(ctx context.Context) (*nftjson.Ruleset, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.bin(), "-j", "list", "ruleset")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nft -j list ruleset: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nftjson.Parse(out.Bytes())
}

// Banned lists the elements of the ban table's sets (BanTable: ban4,
// ban6) in a listing, as nft writes them, by set name.
func Banned(l *nftjson.Ruleset) map[string][]string {
	out := map[string][]string{}
	for _, name := range []string{"ban4", "ban6"} {
		s := l.Sets[nftjson.SetKey(nftplan.TableFamily, nftplan.BanTable, name)]
		if s == nil {
			continue
		}
		elems := []string{}
		for _, e := range s.Elems {
			elems = append(elems, nftjson.ValueText(e))
		}
		out[name] = elems
	}
	return out
}
