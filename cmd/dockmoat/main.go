// Command dockmoat is the CLI: subcommands, flags and what they print.
// `dockmoat run` is package daemon; package host opens the backend and
// Docker for every command; the logic lives in config, rules,
// dockerwatch, netfilter (and its backends ipt and nft), reconciler and
// audit.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/daemon"
	"github.com/dockmoat/dockmoat/dockerwatch"
	"github.com/dockmoat/dockmoat/host"
	"github.com/dockmoat/dockmoat/netfilter"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	configPath   string
	configSet    bool
	iptablesMode string
	logLevel     string
	logFormat    string
	check        bool
	ipv6         bool
	resync       time.Duration
	format       string
	metricsAddr  string
	healthGrace  time.Duration
	auditEvery   time.Duration
	backend      string
	addr         string // healthcheck
	stateDir     string
	reason       string // disable
	explain      string // audit
	swarm        bool   // audit --swarm
	exitZero     bool   // audit --exit-zero
	quiet        bool   // audit -q
	observe      bool   // run --observe, plan --observe
	swarmService string // audit --swarm --service
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, rest := args[0], args[1:]
	if code, done := infoCommand(cmd, rest, stdout, stderr); done {
		return code
	}
	opt, help, err := parseCommand(cmd, rest, stdout, stderr)
	switch {
	case err != nil:
		return 2
	case help:
		return 0
	}
	if code, done := localCommand(cmd, opt, stdout, stderr); done {
		return code
	}
	log, err := newLogger(opt, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dockmoat:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "run":
		err = daemon.Run(ctx, opt.daemon(), log)
	case "plan":
		var differs bool
		differs, err = runPlan(ctx, opt, log, stdout)
		if err == nil && differs && opt.check {
			return 1
		}
	case "uninstall":
		err = runUninstall(ctx, opt, log)
	case "guard":
		err = runGuard(ctx, opt, log, stdout)
	case "audit":
		var beyond bool
		if opt.swarm {
			beyond, err = runAuditSwarm(ctx, opt, stdout)
		} else {
			beyond, err = runAudit(ctx, opt, log, stdout)
		}
		if err == nil && beyond && !opt.exitZero {
			return 1
		}
	}
	if err != nil {
		log.Error(err)
		return 2
	}
	return 0
}

// localCommand runs the commands that need neither a logger nor the
// firewall (they read the state directory, a file or the daemon's
// health endpoint); done is false for any other command.
func localCommand(cmd string, opt options, stdout, stderr io.Writer) (code int, done bool) {
	var err error
	switch cmd {
	case "healthcheck":
		return healthcheck(opt.addr, stderr), true
	case "check-config":
		return checkConfig(opt, stdout, stderr), true
	case "status":
		var ok bool
		if ok, err = runStatus(opt, stdout); err == nil && !ok {
			return 1, true
		}
	case "disable":
		err = runDisable(opt, stdout)
	case "enable":
		err = runEnable(opt, stdout)
	case "observe":
		err = runMode(opt, config.ModeObserve, stdout)
	case "enforce":
		err = runMode(opt, config.ModeEnforce, stdout)
	case "suggest":
		err = runSuggest(opt, stdout)
	default:
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "dockmoat %s: %v\n", cmd, err)
		return 2, true
	}
	return 0, true
}

// infoCommand runs the commands that only print (help, version,
// completion); done is false for any other command.
func infoCommand(cmd string, rest []string, stdout, stderr io.Writer) (code int, done bool) {
	switch cmd {
	case "help", "-h", "--help":
		if len(rest) == 0 {
			fmt.Fprint(stdout, usage)
			return 0, true
		}
		if h, ok := infoHelp[rest[0]]; ok && len(rest) == 1 {
			fmt.Fprint(stdout, h)
			return 0, true
		}
		if _, ok := summaries[rest[0]]; !ok || len(rest) > 1 {
			fmt.Fprintf(stderr, "dockmoat help: unknown command %q; see 'dockmoat help'\n", strings.Join(rest, " "))
			return 2, true
		}
		commandHelp(rest[0], stdout)
		return 0, true
	case "version", "--version":
		fmt.Fprintln(stdout, "dockmoat", versionString())
		return 0, true
	case "man":
		switch {
		case len(rest) == 0:
			writeMan(stdout)
		case len(rest) == 1 && rest[0] == "config":
			writeConfigMan(stdout)
		default:
			fmt.Fprintln(stderr, "dockmoat man: want 'dockmoat man' (dockmoat(8)) or 'dockmoat man config' (dockmoat.yaml(5))")
			return 2, true
		}
		return 0, true
	case "completion":
		var write func(io.Writer)
		if len(rest) == 1 {
			write = completionShells[rest[0]]
		}
		if write == nil {
			fmt.Fprintln(stderr, "dockmoat completion: want 'dockmoat completion bash', 'zsh' or 'fish'; see 'dockmoat help completion'")
			return 2, true
		}
		write(stdout)
		return 0, true
	}
	return 0, false
}

func newLogger(opt options, out io.Writer) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(out)
	lvl, err := logrus.ParseLevel(opt.logLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	log.SetLevel(lvl)
	switch opt.logFormat {
	case "text":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("--log-format: %q is not text or json", opt.logFormat)
	}
	return log, nil
}

func runPlan(ctx context.Context, opt options, log *logrus.Logger, out io.Writer) (bool, error) {
	var doc planDoc
	text := opt.format != "json"
	// With a bad file, plan shows what `run` installs: the fail-closed config.
	cfg, cfgErr := daemon.LoadOrFailClosed(opt.daemon(), log)
	if cfgErr != nil {
		doc.ConfigError = cfgErr.Error()
		if text {
			fmt.Fprintf(out, "config error: %v\nplanning with the fail-closed config, as dockmoat run does\n\n", cfgErr)
		}
	}
	rec, _, err := host.Open(ctx, opt.host(), log, cfg)
	if err != nil {
		return false, err
	}
	if off, disabled := daemon.DisabledState(opt.stateDir, log); disabled {
		rec.SetDisabled(true)
		doc.Disabled = &disabledJSON{Since: off.Since.Format(time.RFC3339), Reason: off.Reason}
		if text {
			fmt.Fprintf(out, "PROTECTION DISABLED since %s (%s): every published port follows Docker's own rules;\nthe rules below stay installed behind one bypass rule per hook. 'dockmoat enable' turns them back on.\n\n",
				off.Since.Format(time.RFC3339), orNone(off.Reason))
		}
	}
	daemon.ApplyMode(opt.stateDir, rec, log)
	daemon.ReadUFWInput(ctx, rec, log)
	if doc.Observe = rec.Config().Observe; doc.Observe && text {
		fmt.Fprint(out, "OBSERVE MODE: new connections that the policy below refuses are let through, counted and logged, not dropped;\n'dockmoat suggest' lists them, 'dockmoat enforce' drops them.\n\n")
	}
	if doc.Banned = banned(ctx, rec.Backend()); text && len(doc.Banned) > 0 {
		writeBanned(out, doc.Banned)
		fmt.Fprintln(out)
	}
	if doc.Lists = urlLists(rec.Config(), opt.stateDir); text && len(doc.Lists) > 0 {
		writeLists(out, doc.Lists)
		fmt.Fprintln(out)
	}
	plans, err := rec.Plan(ctx)
	if err != nil {
		return false, err
	}
	doc.InSync, doc.Families = true, []netfilter.PlanJSON{}
	for _, p := range plans {
		if text {
			fmt.Fprint(out, netfilter.FormatPlan(p))
		}
		j := netfilter.JSONPlan(p)
		doc.InSync = doc.InSync && j.InSync
		doc.Families = append(doc.Families, j)
	}
	if !text {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return false, fmt.Errorf("writing the plan: %w", err)
		}
	}
	return !doc.InSync, nil
}

// planDoc is `dockmoat plan --format json`.
type planDoc struct {
	InSync      bool                 `json:"in_sync"`
	ConfigError string               `json:"config_error,omitempty"`
	Disabled    *disabledJSON        `json:"disabled,omitempty"`
	Observe     bool                 `json:"observe,omitempty"`
	Banned      map[string][]string  `json:"banned,omitempty"` // ban set → its sources
	Lists       []listJSON           `json:"lists,omitempty"`  // the URL source lists
	Families    []netfilter.PlanJSON `json:"families"`
}

type disabledJSON struct {
	Since  string `json:"since"`
	Reason string `json:"reason,omitempty"`
}

func runUninstall(ctx context.Context, opt options, log *logrus.Logger) error {
	rec, _, err := host.Open(ctx, opt.host(), log, config.Default())
	if err != nil {
		return err
	}
	if err := rec.Uninstall(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("uninstall: %w", err)
	}
	if err := host.UninstallLayer(ctx, rec, log); err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	fmt.Fprintln(os.Stdout, "dockmoat: removed; published ports now follow Docker's own rules again")
	return nil
}

func runGuard(ctx context.Context, opt options, log *logrus.Logger, out io.Writer) error {
	// The guard always installs its deny: a bad file only loses its
	// trusted sources (logged), never the protection at boot.
	cfg, _ := daemon.LoadOrFailClosed(opt.daemon(), log)
	rec, _, err := host.Open(ctx, opt.host(), log, cfg)
	if err != nil {
		return err
	}
	links, err := dockerwatch.HostLinks()
	if err != nil {
		// Without them no bridge is exempted: the host's own br-* ones
		// stay closed like Docker's until dockmoat run.
		log.WithError(err).Warn("cannot list the host's interfaces")
	}
	published, perr := daemon.LastPublished(opt.stateDir)
	if perr != nil && !errors.Is(perr, fs.ErrNotExist) {
		log.WithError(perr).Warn("cannot read the last pass's published ports: the guard closes the DNAT path only")
	}
	done, err := rec.Guard(ctx, cfg, netfilter.Boot{Links: links, Published: published})
	for _, d := range done {
		fmt.Fprintln(out, "dockmoat guard:", d)
	}
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	return nil
}

// healthcheck is for container HEALTHCHECKs: no shell or curl in the image.
func healthcheck(addr string, stderr io.Writer) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		fmt.Fprintln(stderr, "dockmoat healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "dockmoat healthcheck: %s", body)
		return 1
	}
	return 0
}
