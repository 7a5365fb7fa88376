package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/metrics"
	"github.com/dockmoat/dockmoat/reconciler"
)

// URL lists (config/lists.go): the daemon fetches each one every refresh
// and keeps the copy in the state directory, replacing it only with a
// copy that parses. The config reads the copy; the list poll
// (reloadOnHUP) sees it change and reads the config again, so a fetch
// reaches the kernel like an edit of a list file. A failed fetch keeps
// the last good copy (across restarts too) and is logged once, counted
// in dockmoat_list_fetch_ok and recorded beside the copy for `plan`.

// listTick is how often the fetcher looks for a list due; maxListSize
// bounds a list's body.
var listTick = time.Second

const maxListSize = 16 << 20

// ListStatus is a URL list's last fetch, beside its copy (NAME.status).
type ListStatus struct {
	URL     string    `json:"url"`
	Fetched time.Time `json:"fetched,omitzero"` // the copy's last good fetch
	Sources int       `json:"sources"`
	Error   string    `json:"error,omitempty"` // the last fetch failed
	Failed  time.Time `json:"failed,omitzero"`
}

// ReadListStatus reads a URL list's status (ok false: never recorded).
func ReadListStatus(stateDir, name string) (ListStatus, bool) {
	var st ListStatus
	data, err := os.ReadFile(statusPath(stateDir, name))
	return st, err == nil && json.Unmarshal(data, &st) == nil
}

func statusPath(stateDir, name string) string {
	return filepath.Join(filepath.Dir(config.ListCachePath(stateDir, name)), name+".status")
}

// listFetcher fetches the URL lists of the config in force.
type listFetcher struct {
	dir    string
	client *http.Client
	log    logrus.FieldLogger
	m      *metrics.Metrics
	due    map[string]time.Time
	last   map[string]ListStatus
}

// followURLLists fetches the config's URL lists until ctx ends.
func followURLLists(ctx context.Context, dir string, rec *reconciler.Reconciler, m *metrics.Metrics, log logrus.FieldLogger) {
	f := &listFetcher{dir: dir, client: &http.Client{Timeout: 30 * time.Second}, log: log, m: m,
		due: map[string]time.Time{}, last: map[string]ListStatus{}}
	t := time.NewTicker(listTick)
	defer t.Stop()
	for {
		f.fetchDue(ctx, rec.Config().ListURLs, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fetchDue fetches the lists whose time has come: at start, one whose
// copy is older than its refresh; then every refresh (a failure is tried
// again within a minute).
func (f *listFetcher) fetchDue(ctx context.Context, lists map[string]config.ListURL, now time.Time) {
	for name, l := range lists {
		due, known := f.due[name]
		if !known {
			due = now
			if fi, err := os.Stat(config.ListCachePath(f.dir, name)); err == nil {
				due = fi.ModTime().Add(l.Refresh)
			}
			f.last[name], _ = ReadListStatus(f.dir, name)
		}
		if now.Before(due) {
			f.due[name] = due
			continue
		}
		if err := f.fetch(ctx, name, l, now); err != nil {
			f.due[name] = now.Add(min(l.Refresh, time.Minute))
			continue
		}
		f.due[name] = now.Add(l.Refresh)
	}
}

// fetch gets one list and keeps it if it parses.
func (f *listFetcher) fetch(ctx context.Context, name string, l config.ListURL, now time.Time) error {
	st := f.last[name]
	st.URL = l.URL
	body, n, err := f.get(ctx, l.URL)
	if err == nil {
		err = keepCopy(config.ListCachePath(f.dir, name), body)
	}
	e := f.log.WithFields(logrus.Fields{"list": name, "url": l.URL})
	if err != nil {
		if st.Error != err.Error() {
			e.WithError(err).Warn("cannot refresh the source list: the last good copy stays in force (none yet: the list opens nothing)")
		}
		st.Error, st.Failed = err.Error(), now
	} else {
		if st.Error != "" || st.Fetched.IsZero() {
			e.WithField("sources", n).Info("source list fetched")
		}
		st.Error, st.Failed, st.Fetched, st.Sources = "", time.Time{}, now, n
	}
	f.last[name] = st
	f.m.ListFetch(name, err == nil)
	if werr := writeJSONFile(filepath.Dir(statusPath(f.dir, name)), name+".status", st); werr != nil {
		e.WithError(werr).Debug("cannot record the list's status for dockmoat plan")
	}
	return err
}

// get fetches a list's body and checks that it parses.
func (f *listFetcher) get(ctx context.Context, url string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", url, err)
	}
	if len(body) > maxListSize {
		return nil, 0, fmt.Errorf("%s is larger than %d MB", url, maxListSize>>20)
	}
	srcs, err := config.ParseList(url, body)
	if err != nil {
		return nil, 0, fmt.Errorf("not a list of CIDRs or addresses: %w", err)
	}
	return body, len(srcs), nil
}

// keepCopy replaces the copy when the body differs: an unchanged copy
// is left alone, so the config is not read again for nothing.
func keepCopy(path string, body []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, body) {
		return nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return writeFileAtomic(path, body)
}

// writeFileAtomic writes path whole or not at all.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
