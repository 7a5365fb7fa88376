package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDisabledState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, off, err := ReadDisabled(dir); err != nil || off {
		t.Fatalf("no directory: off=%v err=%v, want on", off, err)
	}
	since := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	if err := WriteDisabled(dir, Off{Since: since, Reason: "debugging the proxy"}); err != nil {
		t.Fatal(err)
	}
	got, off, err := ReadDisabled(dir)
	if err != nil || !off || !got.Since.Equal(since) || got.Reason != "debugging the proxy" {
		t.Fatalf("after disable: %+v off=%v err=%v", got, off, err)
	}
	if err := ClearDisabled(dir); err != nil {
		t.Fatal(err)
	}
	if err := ClearDisabled(dir); err != nil {
		t.Fatalf("enable twice: %v", err)
	}
	if _, off, _ := ReadDisabled(dir); off {
		t.Fatal("still disabled after enable")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	// Unreadable (a directory where the file should be): an error, not "off".
	if err := os.Mkdir(filepath.Join(dir, disabledFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, off, err := ReadDisabled(dir); err == nil || off {
		t.Errorf("unreadable state: off=%v err=%v, want an error and on", off, err)
	}
}
