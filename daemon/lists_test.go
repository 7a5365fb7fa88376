package daemon

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/metrics"
)

// A fetched list replaces the copy only when it parses; a failure keeps
// the last good copy and is recorded; a list never fetched has no copy.
func TestListFetcher(t *testing.T) {
	var mu sync.Mutex
	body, status := "198.51.100.0/24\n", http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	serve := func(b string, code int) { mu.Lock(); body, status = b, code; mu.Unlock() }
	dir := t.TempDir()
	log, _ := test.NewNullLogger()
	f := &listFetcher{dir: dir, client: srv.Client(), log: log, m: metrics.New(), due: map[string]time.Time{}, last: map[string]ListStatus{}}
	lists := map[string]config.ListURL{"cdn": {URL: srv.URL + "/cdn", Refresh: time.Minute}, "down": {URL: "http://127.0.0.1:1/none", Refresh: time.Minute}}
	copyOf := func(name string) string {
		data, _ := os.ReadFile(config.ListCachePath(dir, name))
		return string(data)
	}
	now := time.Now()
	f.fetchDue(context.Background(), lists, now)
	if copyOf("cdn") != "198.51.100.0/24\n" || copyOf("down") != "" {
		t.Fatalf("first fetch: cdn %q, down %q", copyOf("cdn"), copyOf("down"))
	}
	if st, ok := ReadListStatus(dir, "down"); !ok || st.Error == "" || !st.Fetched.IsZero() {
		t.Errorf("down: %+v %v", st, ok)
	}
	// Not due again before its refresh.
	serve("203.0.113.0/24\n", http.StatusOK)
	f.fetchDue(context.Background(), lists, now.Add(30*time.Second))
	if copyOf("cdn") != "198.51.100.0/24\n" {
		t.Errorf("fetched before its refresh: %q", copyOf("cdn"))
	}
	f.fetchDue(context.Background(), lists, now.Add(61*time.Second))
	if copyOf("cdn") != "203.0.113.0/24\n" {
		t.Errorf("refresh: %q", copyOf("cdn"))
	}
	for i, bad := range []struct {
		body string
		code int
	}{{"oops", http.StatusInternalServerError}, {"<html>not a list</html>\n", http.StatusOK}} {
		serve(bad.body, bad.code)
		f.fetchDue(context.Background(), lists, now.Add(time.Duration(3+i)*time.Hour))
		st, _ := ReadListStatus(dir, "cdn")
		if copyOf("cdn") != "203.0.113.0/24\n" || st.Error == "" || st.Sources != 1 {
			t.Errorf("%q (%d): copy %q, status %+v", bad.body, bad.code, copyOf("cdn"), st)
		}
	}
	// The config reads the copy (a restart keeps it).
	cfg, err := config.ParseIn([]byte("lists:\n  cdn: {url: "+srv.URL+"/cdn}\ntrusted_sources: [list:cdn]\n"), os.ReadFile, dir)
	if err != nil || len(cfg.TrustedSources) != 1 || !strings.HasPrefix(cfg.TrustedSources[0].String(), "203.0.113.0") {
		t.Errorf("config from the copy: %v %v", cfg.TrustedSources, err)
	}
}
