package config

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Named source lists (`lists:`): a file of CIDRs or addresses, one a
// line, `#` comments, referred to as `list:NAME` wherever a source can be
// written (trusted_sources, deny_sources, an allow rule's from, the
// dockmoat.from and dockmoat.allow.PORT labels). A reference is expanded
// to the list's sources when the config is read; the daemon reads the
// config again when a list file changes (ListFiles). A list that cannot
// be read opens nothing (its sources are none) and is reported.

// ListPrefix marks a reference to a named list in a source list.
const ListPrefix = "list:"

type fileList struct {
	File string `yaml:"file"`
}

var listName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// readLists reads the lists' files with read (nil: none is read, every
// list is empty); a list that cannot be read is empty and said in errs.
func readLists(lists map[string]fileList, read func(string) ([]byte, error), paths docPaths) (map[string][]Source, map[string]string, []string, error) {
	out, files := map[string][]Source{}, map[string]string{}
	var errs []string
	names := make([]string, 0, len(lists))
	for name := range lists {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		l := lists[name]
		if !listName.MatchString(name) {
			return nil, nil, nil, paths.at("lists."+name, fmt.Errorf("%q: a list's name is letters, digits, '.', '_' and '-'", name))
		}
		if strings.TrimSpace(l.File) == "" {
			return nil, nil, nil, paths.at("lists."+name, fmt.Errorf("needs file: PATH (one CIDR or address a line)"))
		}
		files[name], out[name] = l.File, []Source{}
		if read == nil {
			continue
		}
		srcs, err := readListFile(l.File, read)
		if err != nil {
			errs = append(errs, fmt.Sprintf("list %s: %v: it opens nothing until fixed", name, err))
			continue
		}
		out[name] = srcs
	}
	return out, files, errs, nil
}

// readListFile reads one CIDR or address a line; `#` starts a comment.
func readListFile(path string, read func(string) ([]byte, error)) ([]Source, error) {
	data, err := read(path)
	if err != nil {
		return nil, err
	}
	var out []Source
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		src, err := ParseSource(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, src)
	}
	return out, sc.Err()
}

// ParseSourcesIn is ParseSources where `list:NAME` stands for the named
// list's sources (an empty list: none, so it opens nothing).
func ParseSourcesIn(s string, lists map[string][]Source) (Sources, error) {
	var plain []string
	var out Sources
	refs := false
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		name, isRef := strings.CutPrefix(item, ListPrefix)
		if !isRef {
			plain = append(plain, item)
			continue
		}
		srcs, ok := lists[name]
		if !ok {
			return Sources{}, fmt.Errorf("%q: no list %q in the config file's lists", item, name)
		}
		refs = true
		out.Prefixes = append(out.Prefixes, srcs...)
	}
	if !refs {
		return ParseSources(s)
	}
	if rest := strings.Join(plain, ","); strings.TrimSpace(strings.ReplaceAll(rest, ",", "")) != "" {
		more, err := ParseSources(rest)
		if err != nil {
			return Sources{}, err
		}
		if more.Any {
			return more, nil
		}
		out.Prefixes = append(out.Prefixes, more.Prefixes...)
	}
	if out.Prefixes == nil {
		out.Prefixes = []Source{} // listed, but empty: opens nothing
	}
	return out, nil
}
