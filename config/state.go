package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultStateDir holds what `dockmoat disable` records. It is state, not
// configuration: it must survive a daemon restart (and a reboot), and the
// config file may be read-only or managed by someone else.
const DefaultStateDir = "/var/lib/dockmoat"

const disabledFile = "disabled"

// Off is a recorded `dockmoat disable`.
type Off struct {
	Since  time.Time
	Reason string
}

// ReadDisabled reports whether protection was switched off. A missing
// directory or file means on; an unreadable one is an error, which the
// daemon treats as on (when in doubt, closed).
func ReadDisabled(dir string) (Off, bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, disabledFile))
	if errors.Is(err, os.ErrNotExist) {
		return Off{}, false, nil
	}
	if err != nil {
		return Off{}, false, fmt.Errorf("reading the disable state: %w", err)
	}
	first, reason, _ := strings.Cut(string(data), "\n")
	off := Off{Reason: strings.TrimSpace(reason)}
	off.Since, _ = time.Parse(time.RFC3339, strings.TrimSpace(first))
	return off, true, nil
}

// WriteDisabled records `dockmoat disable` (atomically: a daemon polling
// the file never reads half of it).
func WriteDisabled(dir string, off Off) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the state directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".disabled-*")
	if err != nil {
		return fmt.Errorf("recording the disable: %w", err)
	}
	defer os.Remove(tmp.Name())
	body := off.Since.UTC().Format(time.RFC3339) + "\n" + strings.TrimSpace(off.Reason) + "\n"
	if _, err := tmp.WriteString(body); err != nil {
		tmp.Close()
		return fmt.Errorf("recording the disable: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("recording the disable: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, disabledFile)); err != nil {
		return fmt.Errorf("recording the disable: %w", err)
	}
	return nil
}

// ClearDisabled records `dockmoat enable`; enabling twice is fine.
func ClearDisabled(dir string) error {
	err := os.Remove(filepath.Join(dir, disabledFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("recording the enable: %w", err)
	}
	return nil
}
