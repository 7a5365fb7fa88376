package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/daemon"
	"github.com/dockmoat/dockmoat/host"
)

// The CLI follows docker's and kubectl's habits: help goes to stdout with
// exit 0 (`help`, `help CMD`, `CMD --help`); a usage error is one line on
// stderr pointing at the help, exit 2; nothing positional is accepted.

const usage = `dockmoat keeps Docker's published ports closed to the outside unless a
container label or the config file opens them.

Usage:
  dockmoat run         [flags]   watch Docker and keep the firewall in sync (daemon)
  dockmoat plan        [flags]   show the rules it would apply and the diff; change nothing
  dockmoat uninstall   [flags]   remove everything dockmoat owns, and nothing else
  dockmoat guard       [flags]   boot step, before Docker starts: install the default deny
  dockmoat audit       [flags]   who can really reach each published port, and why
                                 (exit 0: as intended, 1: reachable beyond policy, 2: error)
  dockmoat status      [flags]   is the daemon running and protecting (exit 0: yes, 1: no)
  dockmoat disable     [flags]   switch protection off (kept across restarts) until enable
  dockmoat enable      [flags]   switch protection back on
  dockmoat observe     [flags]   let through, count and log what the policy refuses (adopt without an outage)
  dockmoat suggest     [flags]   the allow rules (or labels) that keep what was observed working
  dockmoat enforce     [flags]   drop what the policy refuses again (no restart)
  dockmoat check-config [FILE]   check the config file; no root, Docker or firewall needed
                                 (exit 0: valid, 1: not)
  dockmoat healthcheck [flags]   exit 0 when the daemon's /healthz is ok
  dockmoat version               print the version (also --version)
  dockmoat completion SHELL      bash, zsh or fish completion: source <(dockmoat completion bash)
  dockmoat man                   the manual page dockmoat(8): dockmoat man | man -l -
  dockmoat help [COMMAND]        this help, or a command's flags

Run 'dockmoat help COMMAND' for a command's flags.
`

// summaries are the one-line descriptions of `dockmoat help CMD`.
var summaries = map[string]string{
	"run":       "watch Docker and keep the firewall in sync (daemon)",
	"plan":      "show the decision per published port, the rules and the diff against the installed ones; change nothing",
	"uninstall": "remove dockmoat's hooks, chains, sets and table, and nothing else",
	"guard":     "boot step, before Docker starts: install the default deny",
	"audit":     "who can really reach each published port, and why (exit 0: as intended, 1: reachable beyond policy, 2: error)",
	"disable":   "switch protection off without uninstalling: one bypass rule per hook, kept by the running daemon and across restarts, until 'dockmoat enable'",
	"enable":    "switch protection back on after 'dockmoat disable'",
	"observe": "observe mode, recorded in the state directory and followed by the running daemon: new connections the policy refuses are let through, counted and logged " +
		"instead of dropped (also 'run --observe' or mode: observe in the config file; this command wins over both)",
	"enforce":     "enforce mode (the default): drop what the policy refuses; sessions it refuses that were opened while observing are cut; no restart",
	"suggest":     "print the config file's allow rules (--format labels: the labels) that keep exactly what observe mode let through working once enforcing",
	"healthcheck": "exit 0 when the daemon's /healthz is ok (for container health checks)",
	"status":      "is the daemon running and protecting: its last pass, the counts per family, and whether protection is switched off (exit 0: protecting, 1: not)",
	"check-config": "check the config file (--config, or FILE) without root, Docker or the firewall: exit 0 when valid, 1 with the line, " +
		"the key and the fix when not (dockmoat.service runs it before a reload)",
}

// errUsage marks an error that is the caller's: exit 2 with a pointer to help.
var errUsage = errors.New("usage")

// parseCommand parses a command's flags; help is true when --help was
// asked. A usage error has already been printed (one line) when err is
// errUsage.
func parseCommand(cmd string, args []string, stdout, stderr io.Writer) (opt options, help bool, err error) {
	if _, ok := summaries[cmd]; !ok {
		fmt.Fprintf(stderr, "dockmoat: unknown command %q; see 'dockmoat help'\n", cmd)
		return opt, false, errUsage
	}
	fs := commandFlags(cmd, &opt)
	fs.SetOutput(io.Discard) // errors are printed here, in one line
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			commandHelp(cmd, stdout)
			return opt, true, nil
		}
		fmt.Fprintf(stderr, "dockmoat %s: %v; see 'dockmoat help %s'\n", cmd, err, cmd)
		return opt, false, errUsage
	}
	if cmd == "check-config" && fs.NArg() == 1 {
		opt.configPath, opt.configSet = fs.Arg(0), true
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dockmoat %s: unexpected argument %q (it takes flags only); see 'dockmoat help %s'\n", cmd, fs.Arg(0), cmd)
		return opt, false, errUsage
	}
	fs.Visit(func(f *flag.Flag) { opt.configSet = opt.configSet || f.Name == "config" })
	if cmd == "check-config" {
		return opt, false, nil
	}
	if err := opt.validate(cmd); err != nil {
		fmt.Fprintf(stderr, "dockmoat %s: %v\n", cmd, err)
		return opt, false, errUsage
	}
	return opt, false, nil
}

// commandFlags declares a command's flags.
func commandFlags(cmd string, opt *options) *flag.FlagSet {
	fs := flag.NewFlagSet("dockmoat "+cmd, flag.ContinueOnError)
	switch cmd {
	case "healthcheck":
		fs.StringVar(&opt.addr, "addr", "127.0.0.1:9323", "the daemon's --metrics-addr")
		return fs
	case "check-config":
		fs.StringVar(&opt.configPath, "config", config.DefaultPath, "config file (or give it as the argument)")
		stateDirFlag(fs, opt)
		return fs
	case "status":
		stateDirFlag(fs, opt)
		fs.StringVar(&opt.format, "format", "text", "text or json")
		return fs
	case "suggest":
		stateDirFlag(fs, opt)
		fs.StringVar(&opt.format, "format", "config", "config (allow rules for the config file) or labels")
		return fs
	case "disable", "enable", "observe", "enforce":
		stateDirFlag(fs, opt)
		if cmd == "disable" {
			fs.StringVar(&opt.reason, "reason", "", "why, for the log and 'dockmoat plan'")
		}
		return fs
	}
	fs.StringVar(&opt.configPath, "config", config.DefaultPath, "config file (optional at the default path; a missing or invalid file runs fail-closed)")
	fs.StringVar(&opt.iptablesMode, "iptables-mode", "auto", "iptables variant: auto (the one holding Docker's rules), nft or legacy")
	fs.StringVar(&opt.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&opt.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&opt.ipv6, "ipv6", true, "also manage IPv6 (ip6tables)")
	fs.StringVar(&opt.backend, "backend", "auto", "Docker's firewall backend: auto (ask Docker, then /etc/docker/daemon.json, then the ruleset), iptables or nftables")
	switch cmd {
	case "plan":
		fs.BoolVar(&opt.observe, "observe", false, "plan observe mode (as run --observe)")
		fs.BoolVar(&opt.check, "check", false, "exit 1 when the installed rules differ from the plan")
		fs.StringVar(&opt.format, "format", "text", "text or json (docs/reference.md has the schema)")
		stateDirFlag(fs, opt)
	case "audit":
		fs.StringVar(&opt.format, "format", "table", "table or json")
		fs.StringVar(&opt.explain, "explain", "", "PORT[/PROTO] or HOST:PORT/PROTO: the path of each source's first packet, rule by rule, and the fix")
		fs.BoolVar(&opt.exitZero, "exit-zero", false, "exit 0 even when a port is reachable beyond policy (a job that only collects the report)")
		fs.BoolVar(&opt.quiet, "q", false, "quiet: print nothing when every port is as intended (cron mails only the reports that matter)")
		fs.BoolVar(&opt.swarm, "swarm", false, "on a Swarm manager: audit every node (a global job of the dockmoat service's image and settings) and print one report")
		fs.StringVar(&opt.swarmService, "service", "dockmoat_dockmoat", "with --swarm: the dockmoat service whose image and settings the job copies")
		stateDirFlag(fs, opt)
	case "guard":
		stateDirFlag(fs, opt)
	case "run":
		fs.BoolVar(&opt.observe, "observe", false, "observe mode: let through, count and log what the policy refuses, instead of dropping it ('dockmoat suggest', then 'dockmoat enforce')")
		fs.DurationVar(&opt.resync, "resync", 30*time.Second, "period of the full resync that repairs drift")
		fs.StringVar(&opt.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /healthz here (e.g. 127.0.0.1:9323); off when empty")
		fs.DurationVar(&opt.healthGrace, "health-grace", time.Minute, "how long Docker may be unreachable before /healthz fails")
		fs.DurationVar(&opt.auditEvery, "audit-every", 5*time.Minute, "run the audit this often and export dockmoat_ports_beyond_policy (read-only; 0 turns it off)")
		stateDirFlag(fs, opt)
	}
	return fs
}

func stateDirFlag(fs *flag.FlagSet, opt *options) {
	fs.StringVar(&opt.stateDir, "state-dir", config.DefaultStateDir, "dockmoat's state: the disable switch, the last pass (status; the guard's ports at boot), the copies of URL source lists")
}

// commandHelp prints a command's summary and flags.
func commandHelp(cmd string, out io.Writer) {
	fmt.Fprintf(out, "dockmoat %s: %s\n\nUsage:\n  dockmoat %s [flags]\n\nFlags:\n", cmd, summaries[cmd], cmd)
	var opt options
	fs := commandFlags(cmd, &opt)
	fs.SetOutput(out)
	fs.PrintDefaults()
}

// validate checks flag values before anything runs, so that a typo is a
// plain message and not a log line from deep inside.
func (opt options) validate(cmd string) error {
	switch cmd {
	case "healthcheck", "disable", "enable", "observe", "enforce":
		return nil
	case "suggest":
		if opt.format != "config" && opt.format != "labels" {
			return fmt.Errorf("--format: %q is not config, labels", opt.format)
		}
		return nil
	case "status":
		if opt.format != "text" && opt.format != "json" {
			return fmt.Errorf("--format: %q is not text, json", opt.format)
		}
		return nil
	}
	oneOf := func(flagName, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("--%s: %q is not %s", flagName, v, strings.Join(allowed, ", "))
	}
	if _, err := logrus.ParseLevel(opt.logLevel); err != nil {
		return fmt.Errorf("--log-level: %q is not debug, info, warn or error", opt.logLevel)
	}
	errs := []error{
		oneOf("log-format", opt.logFormat, "text", "json"),
		oneOf("iptables-mode", opt.iptablesMode, "auto", "nft", "legacy"),
		oneOf("backend", opt.backend, "auto", "iptables", "nftables"),
	}
	if cmd == "plan" {
		errs = append(errs, oneOf("format", opt.format, "text", "json"))
	}
	if cmd == "audit" {
		errs = append(errs, oneOf("format", opt.format, "table", "json"))
		if opt.explain != "" {
			if _, err := report.ParseTarget(opt.explain); err != nil {
				errs = append(errs, err)
			}
			if opt.swarm {
				errs = append(errs, errors.New("--explain and --swarm: explain one node's port on that node (docker exec into its dockmoat task)"))
			}
		}
	}
	return errors.Join(errs...)
}

// host is how the options open the host.
func (opt options) host() host.Options {
	return host.Options{Backend: opt.backend, IptablesMode: opt.iptablesMode, IPv6: opt.ipv6}
}

// daemon is how the options run the daemon (and read the config as it does).
func (opt options) daemon() daemon.Options {
	return daemon.Options{Host: opt.host(), ConfigPath: opt.configPath, ConfigSet: opt.configSet, Observe: opt.observe,
		StateDir: opt.stateDir, Resync: opt.resync, MetricsAddr: opt.metricsAddr, HealthGrace: opt.healthGrace,
		AuditEvery: opt.auditEvery, Version: versionString()}
}
