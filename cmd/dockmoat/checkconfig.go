package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dockmoat/dockmoat/config"
)

// checkConfig is `dockmoat check-config`: the config file read as the
// daemon reads it, with nothing else (no root, no Docker, no firewall),
// so that a file can be checked before it is installed, and the unit's
// reload fails instead of running on the fail-closed config. Exit 0 when
// valid (or when the default file does not exist: the defaults apply), 1
// when not.
func checkConfig(opt options, stdout, stderr io.Writer) int {
	if !opt.configSet {
		if _, err := os.Stat(opt.configPath); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stdout, "%s: no such file; dockmoat runs on the defaults (every published port closed unless a label opens it)\n", opt.configPath)
			return 0
		}
	}
	cfg, err := config.LoadIn(opt.configPath, true, opt.stateDir)
	if err != nil {
		fmt.Fprintf(stderr, "dockmoat check-config: %v\n", err)
		return 1
	}
	// A list file that cannot be read is the file's fault; a URL list not
	// fetched yet is not (the daemon fetches it), so it is only said.
	for _, n := range cfg.ListNotes {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	for _, e := range cfg.ListErrors {
		fmt.Fprintf(stderr, "dockmoat check-config: %s\n", e)
	}
	if len(cfg.ListErrors) > 0 {
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid: %d trusted source(s), %d allow rule(s), %d egress rule(s), %d list(s), ufw %s, image labels %s\n",
		opt.configPath, len(cfg.TrustedSources), len(cfg.Allow), len(cfg.Egress.Rules), len(cfg.Lists), cfg.UFW, imageLabels(cfg))
	return 0
}

func imageLabels(cfg config.Config) string {
	if cfg.TrustImageLabels {
		return "trusted"
	}
	return "ignored"
}
