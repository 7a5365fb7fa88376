package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
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
	body := off.Since.UTC().Format(time.RFC3339) + "\n" + strings.TrimSpace(off.Reason) + "\n"
	if err := writeState(dir, disabledFile, body); err != nil {
		return fmt.Errorf("recording the disable: %w", err)
	}
	return nil
}

// writeState replaces a file of the state directory atomically.
func writeState(dir, name, body string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the state directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

// The modes `dockmoat observe` and `dockmoat enforce` record (modeFile);
// a recorded mode wins over the config file's `mode:` and `run --observe`.
const (
	ModeObserve = "observe"
	ModeEnforce = "enforce"
	modeFile    = "mode"
)

// WriteMode records `dockmoat observe` or `dockmoat enforce`.
func WriteMode(dir, mode string) error {
	if err := writeState(dir, modeFile, mode+"\n"); err != nil {
		return fmt.Errorf("recording the mode: %w", err)
	}
	return nil
}

// ReadMode returns the recorded mode, "" when none was.
func ReadMode(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, modeFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the recorded mode: %w", err)
	}
	switch m := strings.TrimSpace(string(data)); m {
	case ModeObserve, ModeEnforce:
		return m, nil
	default:
		return "", fmt.Errorf("the recorded mode %q in %s is not observe or enforce", m, filepath.Join(dir, modeFile))
	}
}

// ClearDisabled records `dockmoat enable`; enabling twice is fine.
func ClearDisabled(dir string) error {
	err := os.Remove(filepath.Join(dir, disabledFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("recording the enable: %w", err)
	}
	return nil
}

// daemonLock is the file a running daemon holds locked in the state
// directory, so that `dockmoat enable` and `disable` can tell whether
// anyone will act on what they record.
const daemonLock = "daemon.lock"

// HoldDaemonLock marks, for as long as the process lives (the kernel
// drops the lock of a process that ends, crash or kill), that a daemon
// follows the state in dir. release ends it sooner.
func HoldDaemonLock(dir string) (release func(), err error) {
	_ = os.MkdirAll(dir, 0o755) // as WriteDisabled would; failing is told below
	f, err := os.OpenFile(filepath.Join(dir, daemonLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		// A read-only state directory: a lock file made by enable or
		// disable still serves.
		if f, err = os.Open(filepath.Join(dir, daemonLock)); err != nil {
			return nil, fmt.Errorf("opening the daemon lock: %w", err)
		}
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// DaemonRunning reports whether a daemon holds the lock in dir; known is
// false when that cannot be tried. It leaves the lock file behind, so a
// daemon with a read-only state directory can hold it later.
func DaemonRunning(dir string) (running, known bool) {
	f, err := os.OpenFile(filepath.Join(dir, daemonLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, false
	}
	defer f.Close()
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		return true, true
	case err != nil:
		return false, false
	}
	return false, true // the lock is dropped with the file
}
