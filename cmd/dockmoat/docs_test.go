package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocumentedCommands: every `dockmoat COMMAND --flag …` the README,
// CONTRIBUTING.md and docs/ show is a command dockmoat has, and each flag
// written after it is one that command takes (a renamed flag would leave
// a copied command failing). Each command's help is run too.
func TestDocumentedCommands(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md", "../../CONTRIBUTING.md", "../../ARCHITECTURE.md")
	// "dockmoat" then a lower-case word, then what follows on the line
	// up to the end of the code span or shell comment.
	mention := regexp.MustCompile("(?:^|[\\s`(/])dockmoat ([a-z][a-z-]*)((?: +[^`#|;&)\\n]*)?)")
	flagRe := regexp.MustCompile(`(?:^|\s)--?([a-z][a-z0-9-]*)`)
	other := map[string]bool{"version": true, "man": true, "completion": true, "help": true}
	seen := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range mention.FindAllStringSubmatch(line, -1) {
				cmd := m[1]
				if _, ok := summaries[cmd]; !ok {
					if !other[cmd] && strings.Contains(line, "`") && strings.Contains(line, "`dockmoat "+cmd) {
						t.Errorf("%s:%d: `dockmoat %s`: no such command", filepath.Base(f), i+1, cmd)
					}
					continue
				}
				seen[cmd]++
				var opt options
				fs := commandFlags(cmd, &opt)
				for _, fm := range flagRe.FindAllStringSubmatch(m[2], -1) {
					if fs.Lookup(fm[1]) == nil {
						t.Errorf("%s:%d: dockmoat %s takes no --%s: %q", filepath.Base(f), i+1, cmd, fm[1], strings.TrimSpace(m[0]))
					}
				}
			}
		}
	}
	for cmd := range summaries {
		var out strings.Builder
		commandHelp(cmd, &out)
		if !strings.Contains(out.String(), "Usage:") {
			t.Errorf("help %s:\n%s", cmd, out.String())
		}
	}
	if len(seen) < 6 {
		t.Errorf("found only %v in the docs: the pattern is broken", seen)
	}
	t.Logf("documented commands checked: %v", seen)
}
