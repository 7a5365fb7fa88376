// Package nft is dockmoat's backend for Docker's nftables firewall
// backend: it owns the table inet dockmoat, and nothing else, and replaces
// it in one nft transaction whenever a chain or set of it differs from the
// policy (Render). Its reader of nft listings is the one in the
// project.
package nft

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
)

// Runner runs the nft binary; a fake implements it in tests.
type Runner interface {
	// List returns `nft list table inet dockmoat`, or "" when the table
	// does not exist.
	List(ctx context.Context) (string, error)
	// Apply runs an nft script as one transaction (all or nothing).
	Apply(ctx context.Context, script string) error
}

// Exec runs /usr/sbin/nft (or Bin).
type Exec struct{ Bin string }

func (e Exec) bin() string {
	if e.Bin != "" {
		return e.Bin
	}
	return "nft"
}

// List implements Runner.
func (e Exec) List(ctx context.Context) (string, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.bin(), "list", "table", TableFamily, TableName)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "No such file or directory") {
			return "", nil
		}
		return "", fmt.Errorf("nft list table %s %s: %w: %s", TableFamily, TableName, err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
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

var (
	nftSetRe   = regexp.MustCompile(`^\s*set (\S+) \{`)
	nftChainRe = regexp.MustCompile(`^\s*chain (\S+) \{`)
	nftHashRe  = regexp.MustCompile(`comment "` + regexp.QuoteMeta(rules.CommentPrefix) + `([0-9a-f]{16})`)
)

// Parse reads the hashes of dockmoat's rules per chain from a listing.
func Parse(listing string) map[string][]string {
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
			chain = "" // a set's lines are not rules (see ParseSets)
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

// ParseSets reads the elements of each set from a listing, as nft
// prints them ("172.17.0.2 . tcp . 80"), in listing order.
func ParseSets(listing string) map[string][]string {
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
