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

	"github.com/dockmoat/dockmoat/config"
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
	// A bad config is audit's error (exit 2); run, plan and guard go on
	// fail-closed instead (TestLoadOrFailClosed; they need a firewall).
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("ufw: sometimes\n"), 0o600)
	errb.Reset()
	if code := realMain([]string{"audit", "--config", bad}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "not one of auto, on, off") {
		t.Errorf("audit, bad config: exit %d, stderr %q", code, errb.String())
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

// A missing --config file or an invalid one gives the fail-closed config
// and one error line naming the file, the key and the fix.
func TestLoadOrFailClosed(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("trusted_sources: [10.0.0.0/8]\nufw: maybe\n"), 0o600)
	good := filepath.Join(dir, "good.yaml")
	_ = os.WriteFile(good, []byte("ufw: on\n"), 0o600)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{filepath.Join(dir, "nope.yaml"), []string{"nope.yaml does not exist", "config.example.yaml", "fail-closed", "reload"}},
		{bad, []string{"bad.yaml", "ufw:", "maybe", "not one of auto, on, off", "fail-closed", "kill -HUP"}},
	} {
		var logs bytes.Buffer
		log, _ := newLogger(options{logLevel: "info", logFormat: "text"}, &logs)
		cfg, err := loadOrFailClosed(options{configPath: tc.path, configSet: true}, log)
		if err == nil || cfg.UFW != config.UFWOff || len(cfg.TrustedSources) != 0 || len(cfg.Allow) != 0 {
			t.Errorf("%s: want the fail-closed config and an error, got %+v, %v", tc.path, cfg, err)
		}
		if n := strings.Count(logs.String(), "level=error"); n != 1 {
			t.Errorf("%s: want one error line, got %d:\n%s", tc.path, n, logs.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("%s: log lacks %q:\n%s", tc.path, w, logs.String())
			}
		}
	}
	log, _ := newLogger(options{logLevel: "info", logFormat: "text"}, &bytes.Buffer{})
	if cfg, err := loadOrFailClosed(options{configPath: good, configSet: true}, log); err != nil || cfg.UFW != config.UFWOn {
		t.Errorf("valid file: %+v %v", cfg, err)
	}
}
