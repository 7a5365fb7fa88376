package daemon

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dockmoat/dockmoat/netfilter"
)

// notify sends a state line to the service manager (sd_notify(3)): a
// datagram to $NOTIFY_SOCKET. Without the variable (not run by systemd,
// or not Type=notify) it does nothing.
func notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notifying the service manager: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notifying the service manager: %w", err)
	}
	return nil
}

// readyAfterFirstPass wraps a pass callback: after the first pass that
// succeeded, the host is protected, and the service manager is told
// READY=1 once (so `systemctl start dockmoat` returns only then).
func readyAfterFirstPass(next func(netfilter.SyncResult, error, time.Duration), send func(string) error, warn func(error)) func(netfilter.SyncResult, error, time.Duration) {
	var once sync.Once
	return func(res netfilter.SyncResult, err error, took time.Duration) {
		next(res, err, took)
		if err != nil {
			return
		}
		once.Do(func() {
			if err := send("READY=1\nSTATUS=protecting: first pass installed\n"); err != nil {
				warn(err)
			}
		})
	}
}

// watchdogEvery is how often to ping systemd's watchdog (half of
// WatchdogSec, as sd_watchdog_enabled(3) advises), or 0 when the unit has
// none or it is meant for another process (WATCHDOG_PID).
func watchdogEvery(getenv func(string) string) time.Duration {
	usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}
