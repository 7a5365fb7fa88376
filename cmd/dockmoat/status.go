package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/daemon"
)

// statusReport is `dockmoat status --format json`.
type statusReport struct {
	Running  bool           `json:"running"`
	State    string         `json:"state"` // protecting, observing, disabled, failing, stopped, unknown
	Disabled *disabledJSON  `json:"disabled,omitempty"`
	Daemon   *daemon.Status `json:"daemon,omitempty"`
}

// runStatus prints the daemon's state; ok is false unless it runs and
// protects (exit 1 then, as for a failing check).
func runStatus(opt options, out io.Writer) (ok bool, err error) {
	var rep statusReport
	running, known := config.DaemonRunning(opt.stateDir)
	rep.Running = running
	data, rerr := os.ReadFile(filepath.Join(opt.stateDir, daemon.StatusFile))
	switch {
	case rerr == nil:
		rep.Daemon = &daemon.Status{}
		if err := json.Unmarshal(data, rep.Daemon); err != nil {
			return false, fmt.Errorf("reading %s: %w", daemon.StatusFile, err)
		}
	case !errors.Is(rerr, fs.ErrNotExist):
		return false, fmt.Errorf("reading the daemon's status: %w", rerr)
	}
	off, disabled, derr := config.ReadDisabled(opt.stateDir)
	if derr != nil {
		return false, derr
	}
	switch {
	case !known:
		rep.State = "unknown"
	case !running:
		rep.State = "stopped"
	case disabled:
		rep.State = "disabled"
	case rep.Daemon == nil || rep.Daemon.LastError != "" || rep.Daemon.LastOK.IsZero():
		rep.State = "failing"
	case rep.Daemon.Observe:
		rep.State = "observing"
	default:
		rep.State = "protecting"
	}
	if disabled {
		rep.Disabled = &disabledJSON{Since: off.Since.Format(time.RFC3339), Reason: off.Reason}
	}
	if opt.format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return rep.State == "protecting", enc.Encode(rep)
	}
	writeStatusText(out, rep, opt.stateDir)
	return rep.State == "protecting", nil
}

func writeStatusText(out io.Writer, rep statusReport, dir string) {
	fmt.Fprintf(out, "dockmoat: %s\n", strings.ToUpper(rep.State))
	switch rep.State {
	case "unknown":
		fmt.Fprintf(out, "  cannot tell whether a daemon runs (state directory %s not readable)\n", dir)
	case "stopped":
		fmt.Fprintln(out, "  no daemon runs: the rules of its last pass stay in place (closed), nothing follows Docker")
	case "disabled":
		fmt.Fprintf(out, "  switched off since %s (%s): published ports follow Docker's own rules; 'dockmoat enable'\n", rep.Disabled.Since, orNone(rep.Disabled.Reason))
	case "observing":
		fmt.Fprintln(out, "  observe mode: what the policy refuses is let through and counted; 'dockmoat suggest', then 'dockmoat enforce'")
	}
	d := rep.Daemon
	if d == nil {
		return
	}
	fmt.Fprintf(out, "  version %s, started %s\n", d.Version, d.Started.Format(time.RFC3339))
	fmt.Fprintf(out, "  last pass %s (%s ago)", d.LastPass.Format(time.RFC3339), time.Since(d.LastPass).Round(time.Second))
	if d.LastError != "" {
		fmt.Fprintf(out, ": FAILED: %s", d.LastError)
	}
	fmt.Fprintln(out)
	for _, f := range d.Families {
		if f.Skipped != "" {
			fmt.Fprintf(out, "  %s: skipped: %s\n", f.Family, f.Skipped)
			continue
		}
		fmt.Fprintf(out, "  %s (%s): %d published port(s) open by policy, %d closed\n", f.Family, f.Tool, f.Open, f.Closed)
	}
	if d.Problems > 0 {
		fmt.Fprintf(out, "  %d problem(s): see 'dockmoat plan'\n", d.Problems)
	}
}
