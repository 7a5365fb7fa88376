package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/dockmoat/dockmoat/config/yamlkeys"
)

// Named source lists (`lists:`): a file of CIDRs or addresses, one a
// line, `#` comments, referred to as `list:NAME` wherever a source can be
// written (trusted_sources, deny_sources, an allow rule's from, the
// dockmoat.from and dockmoat.allow.PORT labels). A reference is expanded
// to the list's sources when the config is read; the daemon reads the
// config again when a list file changes (ListFiles). A list that cannot
// be read opens nothing (its sources are none) and is reported.
//
// A list at a URL (`url:`, `refresh:`) is read from its copy in the
// state directory (ListCachePath), which the daemon fetches and replaces
// only with a copy that parses (daemon/lists.go): a failed fetch keeps
// the last good copy, across restarts too, and a list never fetched
// opens nothing.

// ListPrefix marks a reference to a named list in a source list.
const ListPrefix = "list:"

type fileList struct {
	File    string `yaml:"file"`
	URL     string `yaml:"url"`
	Refresh string `yaml:"refresh"`
}

// ListURL is where a URL list is fetched from, and how often.
type ListURL struct {
	URL     string
	Refresh time.Duration
}

// DefaultListRefresh is a URL list's refresh when the file names none.
const DefaultListRefresh = time.Hour

// ListCachePath is where the copy of URL list name is kept under the
// state directory.
func ListCachePath(stateDir, name string) string {
	return filepath.Join(stateDir, "lists", name+".list")
}

var listName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// readLists reads the lists' files with read (nil: none is read, every
// list is empty); a list that cannot be read is empty and said in errs,
// or in notes for a URL list (whose copy the daemon keeps).
func readLists(cfg *Config, lists map[string]fileList, read func(string) ([]byte, error), stateDir string, paths yamlkeys.Paths) error {
	out, files := map[string][]Source{}, map[string]string{}
	var errs, notes []string
	names := make([]string, 0, len(lists))
	for name := range lists {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		l := lists[name]
		if !listName.MatchString(name) {
			return paths.At("lists."+name, fmt.Errorf("%q: a list's name is letters, digits, '.', '_' and '-'", name))
		}
		path, err := listSource(cfg, name, l, stateDir)
		if err != nil {
			return paths.At("lists."+name, err)
		}
		out[name] = []Source{}
		// A URL list's trouble is the fetch's, not the file's (a note).
		said := &errs
		if l.URL != "" {
			said = &notes
		}
		if path == "" {
			*said = append(*said, fmt.Sprintf("list %s: no state directory to keep its copy of %s: it opens nothing", name, l.URL))
			continue
		}
		files[name] = path
		if read == nil {
			continue
		}
		srcs, err := readListFile(path, read)
		switch {
		case err != nil && l.URL != "" && errors.Is(err, fs.ErrNotExist):
			*said = append(*said, fmt.Sprintf("list %s: not fetched from %s yet: it opens nothing until the first fetch", name, l.URL))
		case err != nil:
			*said = append(*said, fmt.Sprintf("list %s: %v: it opens nothing until fixed", name, err))
		default:
			out[name] = srcs
		}
	}
	cfg.Lists, cfg.ListFiles, cfg.ListErrors, cfg.ListNotes = out, files, errs, notes
	return nil
}

// listSource checks a list's entry and returns the file its sources are
// read from: its own, or its URL's copy ("" without a state directory).
func listSource(cfg *Config, name string, l fileList, stateDir string) (string, error) {
	file, url := strings.TrimSpace(l.File), strings.TrimSpace(l.URL)
	switch {
	case file != "" && url != "":
		return "", fmt.Errorf("give file: or url:, not both")
	case file != "":
		if l.Refresh != "" {
			return "", fmt.Errorf("refresh: is for url: lists (a file is read again when it changes)")
		}
		return file, nil
	case url == "":
		return "", fmt.Errorf("needs file: PATH or url: URL (one CIDR or address a line)")
	}
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		return "", fmt.Errorf("url: %q is not an http:// or https:// URL", url)
	}
	refresh := DefaultListRefresh
	if l.Refresh != "" {
		d, err := time.ParseDuration(l.Refresh)
		if err != nil || d < time.Second {
			return "", fmt.Errorf("refresh: %q is not a duration of at least 1s (as in 1h or 15m)", l.Refresh)
		}
		refresh = d
	}
	if cfg.ListURLs == nil {
		cfg.ListURLs = map[string]ListURL{}
	}
	cfg.ListURLs[name] = ListURL{URL: url, Refresh: refresh}
	if stateDir == "" {
		return "", nil
	}
	return ListCachePath(stateDir, name), nil
}

// ParseList reads a list's text: one CIDR or address a line, `#`
// comments (what the daemon checks before keeping a fetched copy).
func ParseList(name string, data []byte) ([]Source, error) {
	return readListFile(name, func(string) ([]byte, error) { return data, nil })
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
		out.Ifaces = more.Ifaces
	}
	if out.Prefixes == nil {
		out.Prefixes = []Source{} // listed, but empty: opens nothing
	}
	return out, nil
}
