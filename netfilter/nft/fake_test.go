package nft

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"regexp"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/nft/nftplan"
	"github.com/dockmoat/dockmoat/rules"
)

// fakeNFT keeps the table as the script defined it; List reads it the
// way nft would report it.
type fakeNFT struct {
	table   string
	applies int
	lists   int
	fail    error
	others  uint32 // commits to other tables (Docker's)
}

// Generation stands for the kernel's: it moves whenever the table does,
// whoever changed it (a test writing f.table is someone else), and with
// commits to other tables.
func (f *fakeNFT) Generation() (uint32, error) {
	return crc32.ChecksumIEEE([]byte(f.table)) + f.others, nil
}

// List implements Runner.
func (f *fakeNFT) List(context.Context) (nftplan.Listing, error) {
	f.lists++
	if f.table == "" {
		return nftplan.Listing{}, nil
	}
	return nftplan.Listing{Chains: scriptChains(f.table), Sets: scriptSets(f.table)}, nil
}

// Apply implements Runner: the script's table becomes the fake's, once
// checkScript accepts it.
func (f *fakeNFT) Apply(_ context.Context, script string) error {
	if f.fail != nil {
		return f.fail
	}
	if err := checkScript(script); err != nil {
		return err
	}
	f.applies++
	if i := strings.Index(script, "table inet dockmoat {"); i >= 0 {
		f.table = script[i:]
	} else if strings.Contains(script, "delete table inet dockmoat\n") {
		f.table = ""
	}
	return nil
}

// checkScript refuses what nft would refuse, or what would replace the
// table other than atomically: every table the script defines is first
// created and deleted in the same script (so that one transaction swaps
// it, whether it existed or not), but the ban table, which is kept and
// whose chains are flushed before their rules are written again, braces balance, each set a rule looks
// up (@name) is defined in the same table, and every rule of a chain
// carries dockmoat's comment (a rule without one is not ours and reads
// back as drift).
func checkScript(script string) error {
	deleted, flushed, defined := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var table, chain string
	depth := 0
	sets, refs := map[string]bool{}, map[string]string{}
	for n, line := range strings.Split(script, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case depth == 0 && strings.HasPrefix(t, "delete table "):
			deleted[strings.TrimPrefix(t, "delete table ")] = true
		case depth == 0 && strings.HasPrefix(t, "flush chain "):
			flushed[strings.TrimPrefix(t, "flush chain ")] = true
		case depth == 0 && strings.HasSuffix(t, " {") && strings.HasPrefix(t, "table "):
			table = strings.TrimSuffix(strings.TrimPrefix(t, "table "), " {")
			defined[table] = true
			if !deleted[table] && table != nftplan.TableFamily+" "+nftplan.BanTable {
				return fmt.Errorf("line %d: table %s defined without being deleted first in the same script", n+1, table)
			}
		case depth == 1 && strings.HasPrefix(t, "chain "):
			chain = table + " " + strings.Fields(t)[1]
		case depth == 1 && strings.HasPrefix(t, "set "):
			sets[table+" "+strings.Fields(t)[1]] = true
		case depth == 2 && strings.Contains(line, "\t\t") && t != "" && !strings.HasSuffix(t, "{") && t != "}" &&
			!strings.HasPrefix(t, "type ") && !strings.HasPrefix(t, "flags ") && !strings.HasPrefix(t, "elements ") &&
			!strings.HasPrefix(t, "auto-merge") && !strings.Contains(t, `comment "`+rules.CommentPrefix):
			return fmt.Errorf("line %d: rule without dockmoat's comment: %s", n+1, t)
		case depth == 2 && !deleted[table] && strings.Contains(t, `comment "`) && !flushed[chain]:
			// A kept table's chain gets its rules again: flushed first,
			// or every pass would add a copy.
			return fmt.Errorf("line %d: rule added to %s, which the script did not flush", n+1, chain)
		}
		for _, m := range setRefRe.FindAllStringSubmatch(t, -1) {
			refs[table+" "+m[1]] = fmt.Sprintf("line %d", n+1)
		}
		depth += strings.Count(t, "{") - strings.Count(t, "}")
		if depth < 0 {
			return fmt.Errorf("line %d: unbalanced }", n+1)
		}
	}
	if depth != 0 {
		return fmt.Errorf("unbalanced braces: %d left open", depth)
	}
	if ban := nftplan.TableFamily + " " + nftplan.BanTable; deleted[ban] && defined[ban] {
		return fmt.Errorf("table %s deleted and written again: the bans in its sets would be lost", ban)
	}
	for ref, where := range refs {
		if !sets[ref] {
			return fmt.Errorf("%s: set %s looked up but not defined", where, ref)
		}
	}
	return nil
}

var setRefRe = regexp.MustCompile(`@([A-Za-z0-9_]+)`)

// The fake's reader of its own script text (production reads nft -j).
var (
	nftSetRe   = regexp.MustCompile(`^\s*set (\S+) \{`)
	nftChainRe = regexp.MustCompile(`^\s*chain (\S+) \{`)
	nftTableRe = regexp.MustCompile(`^table inet (\S+) \{`)
	nftHashRe  = regexp.MustCompile(`comment "` + regexp.QuoteMeta(rules.CommentPrefix) + `([0-9a-f]{16})`)
)

// scriptChains reads the hashes of dockmoat's rules per chain from a listing.
func scriptChains(listing string) map[string][]string {
	owned := map[string][]string{}
	chain, prefix := "", ""
	sc := bufio.NewScanner(strings.NewReader(listing))
	sc.Buffer(make([]byte, 64*1024), 8*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m := nftTableRe.FindStringSubmatch(line); m != nil {
			prefix = ""
			if m[1] == nftplan.CheckTable || m[1] == nftplan.BanTable {
				prefix = m[1] + "/"
			}
			continue
		}
		if m := nftChainRe.FindStringSubmatch(line); m != nil {
			chain = prefix + m[1]
			owned[chain] = []string{}
			continue
		}
		if nftSetRe.MatchString(line) {
			chain = "" // a set's lines are not rules (see scriptSets)
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

// scriptSets reads the elements of each set from a listing, as nft
// prints them ("172.17.0.2 . tcp . 80"), in listing order.
func scriptSets(listing string) map[string][]string {
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
