package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/config"
)

func TestCLI(t *testing.T) {
	run := func(args ...string) (code int, stdout, stderr string) {
		var out, errb bytes.Buffer
		code = realMain(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "dockmoat ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, _ := run("--version"); code != 0 || !strings.HasPrefix(out, "dockmoat ") {
		t.Errorf("--version: %d %q", code, out)
	}
	// Help: stdout, exit 0, for the tool and for each command.
	for _, args := range [][]string{nil, {"help"}, {"--help"}, {"-h"}} {
		if code, out, errs := run(args...); code != 0 || !strings.Contains(out, "dockmoat help COMMAND") || errs != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	for _, args := range [][]string{{"help", "run"}, {"run", "--help"}, {"run", "-h"}, {"help", "audit"}, {"healthcheck", "--help"}} {
		code, out, errs := run(args...)
		if code != 0 || errs != "" || !strings.Contains(out, "Usage:\n  dockmoat "+strings.TrimPrefix(strings.Join(args, " "), "help ")[:3]) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if _, out, _ := run("help", "run"); !strings.Contains(out, "-metrics-addr") || strings.Contains(out, "\n  -format ") {
		t.Errorf("help run shows run's flags only:\n%s", out)
	}
	// Usage errors: one line on stderr naming the help, exit 2.
	for args, want := range map[string]string{
		"frobnicate":                 `dockmoat: unknown command "frobnicate"; see 'dockmoat help'`,
		"help frobnicate":            `dockmoat help: unknown command "frobnicate"`,
		"run --nope":                 "dockmoat run: flag provided but not defined: -nope; see 'dockmoat help run'",
		"plan extra":                 `dockmoat plan: unexpected argument "extra" (it takes flags only)`,
		"plan extra --check":         `unexpected argument "extra"`,
		"run --log-level loud":       `dockmoat run: --log-level: "loud" is not debug, info, warn or error`,
		"plan --log-format xml":      `--log-format: "xml" is not text, json`,
		"run --iptables-mode nft2":   `--iptables-mode: "nft2" is not auto, nft, legacy`,
		"guard --backend ebpf":       `--backend: "ebpf" is not auto, iptables, nftables`,
		"audit --format xml":         `dockmoat audit: --format: "xml" is not table, json`,
		"audit --explain 80/icmp":    `--explain "80/icmp": protocol "icmp" is not tcp, udp or sctp`,
		"healthcheck --addr":         "flag needs an argument: -addr",
		"healthcheck 127.0.0.1:9323": `unexpected argument "127.0.0.1:9323"`,
	} {
		code, out, errs := run(strings.Fields(args)...)
		if code != 2 || out != "" || !strings.Contains(errs, want) || strings.Count(errs, "\n") != 1 || strings.Contains(errs, "level=") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want one line containing %q", args, code, out, errs, want)
		}
	}
	// A bad config is audit's error (exit 2); run, plan and guard go on
	// fail-closed instead (TestLoadOrFailClosed; they need a firewall).
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("ufw: sometimes\n"), 0o600)
	if code, _, errs := run("audit", "--config", bad); code != 2 || !strings.Contains(errs, "not one of auto, on, off") {
		t.Errorf("audit, bad config: exit %d, stderr %q", code, errs)
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

func TestDisableEnableCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	if code := realMain([]string{"disable", "--state-dir", dir, "--reason", "moving hosts"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "dockmoat enable") {
		t.Fatalf("disable: exit %d, %q %q", code, out.String(), errb.String())
	}
	off, disabled, err := config.ReadDisabled(dir)
	if err != nil || !disabled || off.Reason != "moving hosts" || time.Since(off.Since) > time.Minute {
		t.Fatalf("recorded: %+v %v %v", off, disabled, err)
	}
	// No daemon holds the state directory: enable records, but must not
	// report success (the bypass stays in the kernel); with one, it does.
	if code := realMain([]string{"enable", "--state-dir", dir}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "no dockmoat daemon runs here") {
		t.Fatalf("enable without a daemon: exit %d, %q", code, errb.String())
	}
	if _, disabled, _ := config.ReadDisabled(dir); disabled {
		t.Fatal("still disabled after enable")
	}
	release, err := config.HoldDaemonLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := realMain([]string{"enable", "--state-dir", dir}, &out, &errb); code != 0 {
		t.Fatalf("enable with a daemon: exit %d, %q", code, errb.String())
	}
	release()
	if running, known := config.DaemonRunning(dir); running || !known {
		t.Errorf("after release: running %v, known %v", running, known)
	}
	errb.Reset()
	if code := realMain([]string{"enable", "now"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unexpected argument") {
		t.Errorf("enable now: exit %d %q", code, errb.String())
	}
	out.Reset()
	if code := realMain([]string{"help", "disable"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "-reason") || !strings.Contains(out.String(), "-state-dir") {
		t.Errorf("help disable: %d %q", code, out.String())
	}
}

// TestCompletionBash runs the script in bash: it must parse and offer the
// commands and a command's flags.
func TestCompletionBash(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"completion", "bash"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if code := realMain([]string{"completion", "tcsh"}, &bytes.Buffer{}, &errb); code != 2 {
		t.Errorf("completion tcsh: exit %d", code)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := out.String() + `
COMP_WORDS=(dockmoat di); COMP_CWORD=1; _dockmoat; echo "${COMPREPLY[*]}"
COMP_WORDS=(dockmoat disable --r); COMP_CWORD=2; _dockmoat; echo "${COMPREPLY[*]}"
COMP_WORDS=(dockmoat run --metrics); COMP_CWORD=2; _dockmoat; echo "${COMPREPLY[*]}"
`
	got, err := exec.Command(bash, "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, got)
	}
	if want := "disable\n--reason\n--metrics-addr\n"; string(got) != want {
		t.Errorf("completions:\n%s\nwant:\n%s", got, want)
	}
}

// TestCompletionZshFish runs the zsh and fish scripts: each parses, fish
// offers the commands and a command's flags, zsh loads under compinit.
// Every command that `help` lists has a help of its own.
func TestCompletionZshFish(t *testing.T) {
	for _, cmd := range allCommands() {
		var out bytes.Buffer
		if code := realMain([]string{"help", cmd}, &out, &bytes.Buffer{}); code != 0 || out.Len() == 0 {
			t.Errorf("help %s: exit %d", cmd, code)
		}
	}
	script := func(shell string) string {
		var out, errb bytes.Buffer
		if code := realMain([]string{"completion", shell}, &out, &errb); code != 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, errb.String())
		}
		return out.String()
	}
	for _, shell := range []string{"zsh", "fish"} {
		if _, err := exec.LookPath(shell); err != nil {
			if os.Getenv("DOCKMOAT_REQUIRE_INTEGRATION") == "1" {
				t.Fatalf("%s missing (make deps installs it)", shell)
			}
			t.Skipf("%s missing", shell)
		}
	}
	dir := t.TempDir()
	zsh, fish := filepath.Join(dir, "_dockmoat"), filepath.Join(dir, "dockmoat.fish")
	if err := os.WriteFile(zsh, []byte(script("zsh")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fish, []byte(script("fish")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zsh", "-f", "-c", "autoload -U compinit && compinit -u -d "+dir+"/zcd && source "+zsh).CombinedOutput(); err != nil {
		t.Errorf("zsh: %v\n%s", err, out)
	}
	got, err := exec.Command("fish", "--no-config", "-c", "source "+fish+"; complete -C 'dockmoat di'; complete -C 'dockmoat disable --r'").CombinedOutput()
	if err != nil {
		t.Fatalf("fish: %v\n%s", err, got)
	}
	if s := string(got); !strings.Contains(s, "disable\t") || !strings.Contains(s, "--reason\t") {
		t.Errorf("fish completions:\n%s", s)
	}
}
