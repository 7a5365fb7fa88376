package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "dockmoat ") {
		t.Errorf("version: %d %q", code, out.String())
	}
	for _, args := range [][]string{nil, {"frobnicate"}, {"run", "--log-level", "loud"}, {"plan", "--log-format", "xml"}, {"run", "--nope"}} {
		out.Reset()
		errb.Reset()
		if code := realMain(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage); stderr %q", args, code, errb.String())
		}
	}
	// A missing --config file is an error naming it; nothing else runs.
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	errb.Reset()
	if code := realMain([]string{"run", "--config", missing}, &out, &errb); code != 2 || !strings.Contains(errb.String(), missing) {
		t.Errorf("missing --config: exit %d, stderr %q", code, errb.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("ufw: sometimes\n"), 0o600)
	errb.Reset()
	if code := realMain([]string{"plan", "--config", bad}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "not one of auto, on, off") {
		t.Errorf("bad config: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := realMain([]string{"audit", "--format", "xml"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--format") {
		t.Errorf("bad format: exit %d, stderr %q", code, errb.String())
	}
}

func TestHealthcheck(t *testing.T) {
	healthy := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || !healthy {
			http.Error(w, "unhealthy: last reconcile failed", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var errb bytes.Buffer
	if code := realMain([]string{"healthcheck", "--addr", addr}, &bytes.Buffer{}, &errb); code != 0 {
		t.Errorf("healthy: %d %s", code, errb.String())
	}
	healthy = false
	if code := realMain([]string{"healthcheck", "--addr", addr}, &bytes.Buffer{}, &errb); code != 1 || !strings.Contains(errb.String(), "last reconcile failed") {
		t.Errorf("unhealthy: %d %s", code, errb.String())
	}
}

func TestBackendFlag(t *testing.T) {
	for _, f := range []string{"iptables", "nftables"} {
		if b, _, err := detectBackend(context.Background(), f); err != nil || b != f {
			t.Errorf("%s: %s %v", f, b, err)
		}
	}
	if _, _, err := detectBackend(context.Background(), "ebpf"); err == nil {
		t.Error("an unknown backend must be refused")
	}
}
