package main

import (
	"fmt"
	"io"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/daemon"
	"github.com/dockmoat/dockmoat/observe"
)

func runMode(opt options, mode string, out io.Writer) error {
	if err := config.WriteMode(opt.stateDir, mode); err != nil {
		return err
	}
	if mode == config.ModeObserve {
		fmt.Fprintln(out, "dockmoat: OBSERVE mode recorded: what the policy refuses is let through, counted and logged; 'dockmoat suggest' shows it, 'dockmoat enforce' drops it again.")
	} else {
		fmt.Fprintln(out, "dockmoat: ENFORCE mode recorded: what the policy refuses is dropped, and sessions it refuses that were opened while observing are cut.")
	}
	if running, known := config.DaemonRunning(opt.stateDir); known && !running {
		fmt.Fprintln(out, "No dockmoat daemon runs here: it applies this when it starts.")
		return nil
	}
	fmt.Fprintln(out, "A running dockmoat applies this within a second, without a restart; it wins over the config file's mode: and --observe until the other command is run.")
	return nil
}

// runSuggest prints the allow rules (or labels) that keep what observe
// mode let through working once enforcing.
func runSuggest(opt options, out io.Writer) error {
	r, err := daemon.LoadObserved(opt.stateDir)
	if err != nil {
		return err
	}
	if r.Since.IsZero() {
		return fmt.Errorf("nothing observed yet in %s: run dockmoat in observe mode first ('dockmoat observe', or 'dockmoat run --observe')", opt.stateDir)
	}
	if opt.format == "labels" {
		return observe.WriteLabels(out, r)
	}
	return observe.WriteConfig(out, r)
}
