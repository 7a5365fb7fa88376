package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/daemon"
)

// listJSON is a URL list's state in `plan --format json`.
type listJSON struct {
	Name    string `json:"name"`
	URL     string `json:"url"`
	Sources int    `json:"sources"`
	Fetched string `json:"fetched,omitempty"` // RFC 3339; empty: never
	Error   string `json:"error,omitempty"`   // the last fetch failed
}

// urlLists tells, per URL list, what the daemon last fetched.
func urlLists(cfg config.Config, stateDir string) []listJSON {
	var out []listJSON
	for _, name := range slices.Sorted(maps.Keys(cfg.ListURLs)) {
		st, _ := daemon.ReadListStatus(stateDir, name)
		l := listJSON{Name: name, URL: cfg.ListURLs[name].URL, Sources: len(cfg.Lists[name]), Error: st.Error}
		if !st.Fetched.IsZero() {
			l.Fetched = st.Fetched.Format(time.RFC3339)
		}
		out = append(out, l)
	}
	return out
}

func writeLists(out io.Writer, lists []listJSON) {
	for _, l := range lists {
		fmt.Fprintf(out, "list %s (%s): ", l.Name, l.URL)
		switch {
		case l.Fetched == "" && l.Sources == 0:
			fmt.Fprint(out, "never fetched: it opens nothing")
		case l.Fetched == "":
			fmt.Fprintf(out, "%d source(s) from an earlier copy", l.Sources)
		default:
			fmt.Fprintf(out, "%d source(s), fetched %s", l.Sources, l.Fetched)
		}
		if l.Error != "" {
			fmt.Fprintf(out, "; LAST FETCH FAILED: %s (the copy above stays in force)", l.Error)
		}
		fmt.Fprintln(out)
	}
}
