package daemon

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/netfilter"
)

func TestNotifySendsToSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if err := notify("READY=1\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := ln.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "READY=1\n" {
		t.Fatalf("got %q %v", buf[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := notify("READY=1\n"); err != nil {
		t.Errorf("without systemd: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	if err := notify("READY=1\n"); err == nil {
		t.Error("a missing socket is an error to log")
	}
}

// READY only after a pass succeeded, and once.
func TestReadyAfterFirstPass(t *testing.T) {
	var sent []string
	var passes int
	cb := readyAfterFirstPass(func(netfilter.SyncResult, error, time.Duration) { passes++ },
		func(s string) error { sent = append(sent, s); return nil }, func(error) {})
	cb(netfilter.SyncResult{}, errors.New("docker down"), 0)
	if len(sent) != 0 {
		t.Fatalf("READY before protection: %q", sent)
	}
	cb(netfilter.SyncResult{}, nil, 0)
	cb(netfilter.SyncResult{}, nil, 0)
	if passes != 3 || len(sent) != 1 || sent[0][:8] != "READY=1\n" {
		t.Errorf("passes %d, sent %q", passes, sent)
	}
}

func TestWatchdogEvery(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	self := strconv.Itoa(os.Getpid())
	for _, c := range []struct {
		vars map[string]string
		want time.Duration
	}{
		{map[string]string{}, 0},
		{map[string]string{"WATCHDOG_USEC": "60000000"}, 30 * time.Second},
		{map[string]string{"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": self}, 30 * time.Second},
		{map[string]string{"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, 0}, // meant for another process
		{map[string]string{"WATCHDOG_USEC": "soon"}, 0},
	} {
		if got := watchdogEvery(env(c.vars)); got != c.want {
			t.Errorf("%v: %s, want %s", c.vars, got, c.want)
		}
	}
}
