package config

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// list:NAME stands for the list's sources wherever a source goes; a list
// that cannot be read is empty (opens nothing) and said; an unknown list
// is an error naming it.
func TestLists(t *testing.T) {
	files := map[string]string{"/lists/office": "# the office\n198.51.100.0/24\n203.0.113.7 # vpn\n\n", "/lists/bad": "198.51.100.0/24\nnot-an-address\n"}
	read := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
	cfg, err := ParseWith([]byte(`lists:
  office: {file: /lists/office}
  gone: {file: /lists/gone}
  bad: {file: /lists/bad}
trusted_sources: [list:office, 192.0.2.1]
deny_sources: [list:gone]
allow:
  - container: web
    ports: ["80"]
    from: [list:office]
  - container: db
    ports: ["5432"]
    from: [list:bad]
`), read)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.7/32"), netip.MustParsePrefix("192.0.2.1/32")}
	if !slices.Equal(cfg.TrustedSources, want) || len(cfg.DenySources) != 0 {
		t.Errorf("trusted %v, deny %v", cfg.TrustedSources, cfg.DenySources)
	}
	if web := cfg.Allow[0].From; web.Any || !slices.Equal(web.Prefixes, want[:2]) {
		t.Errorf("web from %+v", web)
	}
	if db := cfg.Allow[1].From; db.Any || len(db.Prefixes) != 0 || db.Prefixes == nil {
		t.Errorf("a list that cannot be read must open nothing: %+v", db)
	}
	if len(cfg.ListErrors) != 2 || !strings.Contains(strings.Join(cfg.ListErrors, "\n"), "/lists/bad:2") {
		t.Errorf("list errors: %q", cfg.ListErrors)
	}
	if cfg.ListFiles["office"] != "/lists/office" {
		t.Errorf("list files: %v", cfg.ListFiles)
	}
	_, err = ParseWith([]byte("trusted_sources: [list:nope]\n"), read)
	if err == nil || !strings.Contains(err.Error(), `no list "nope"`) {
		t.Errorf("unknown list: %v", err)
	}
	if _, err := ParseSourcesIn("list:office, any", cfg.Lists); err != nil {
		t.Error(err)
	}
	if s, _ := ParseSourcesIn("list:office, any", cfg.Lists); !s.Any {
		t.Errorf("any with a list is everyone: %+v", s)
	}
	if _, err := ParseWith([]byte("lists:\n  office: {fiel: /x}\n"), read); err == nil || !strings.Contains(err.Error(), `unknown key "fiel" in lists.office`) {
		t.Errorf("typo in a list: %v", err)
	}
}

// A URL list is read from its copy in the state directory: none yet
// opens nothing and says so; a copy gives its sources; the refresh
// defaults to an hour.
func TestURLLists(t *testing.T) {
	doc := []byte("lists:\n  cdn: {url: https://example.net/ips.txt, refresh: 15m}\n  mon: {url: http://192.0.2.5/mon.txt}\n" +
		"allow:\n  - container: web\n    ports: [\"443\"]\n    from: [list:cdn, list:mon]\n")
	copies := map[string]string{ListCachePath("/state", "cdn"): "198.51.100.0/24\n"}
	read := func(p string) ([]byte, error) {
		if s, ok := copies[p]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
	cfg, err := ParseIn(doc, read, "/state")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Allow[0].From.Prefixes; len(got) != 1 || got[0] != netip.MustParsePrefix("198.51.100.0/24") {
		t.Errorf("sources %v", got)
	}
	if cfg.ListURLs["cdn"] != (ListURL{URL: "https://example.net/ips.txt", Refresh: 15 * time.Minute}) || cfg.ListURLs["mon"].Refresh != time.Hour {
		t.Errorf("urls %+v", cfg.ListURLs)
	}
	if cfg.ListFiles["cdn"] != "/state/lists/cdn.list" || len(cfg.ListErrors) != 0 || len(cfg.ListNotes) != 1 || !strings.Contains(cfg.ListNotes[0], "not fetched from http://192.0.2.5/mon.txt yet") {
		t.Errorf("files %v errors %v notes %v", cfg.ListFiles, cfg.ListErrors, cfg.ListNotes)
	}
	// Without a state directory (check-config elsewhere, tests) a URL list
	// opens nothing and says why.
	cfg, err = ParseIn(doc, read, "")
	if err != nil || len(cfg.Allow[0].From.Prefixes) != 0 || len(cfg.ListNotes) != 2 || !strings.Contains(cfg.ListNotes[0], "no state directory") {
		t.Errorf("no state dir: %+v %v %v", cfg.Allow, cfg.ListNotes, err)
	}
	for _, bad := range []string{
		"lists:\n  x: {file: /a, url: https://b}\n",
		"lists:\n  x: {url: ftp://b}\n",
		"lists:\n  x: {url: https://b, refresh: soon}\n",
		"lists:\n  x: {url: https://b, refresh: 10ms}\n",
		"lists:\n  x: {file: /a, refresh: 1h}\n",
		"lists:\n  x: {}\n",
	} {
		if _, err := ParseIn([]byte(bad), read, "/state"); err == nil || !strings.Contains(err.Error(), "lists.x") {
			t.Errorf("%q: want an error at lists.x, got %v", bad, err)
		}
	}
}
