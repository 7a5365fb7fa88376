// Command dockmoat is the CLI entry point: subcommands, flags and wiring.
// The logic lives in config, rules, dockerwatch, netfilter (and its
// backends ipt and nft) and reconciler.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/dockerwatch"
	"github.com/dockmoat/dockmoat/host"
	"github.com/dockmoat/dockmoat/metrics"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/reconciler"
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
		err = runDaemon(ctx, opt, log)
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

func loadConfig(opt options) (config.Config, error) {
	cfg, err := config.Load(opt.configPath, opt.configSet)
	if err == nil && opt.observe {
		cfg.Observe = true // a file that cannot be read runs closed, flag or not
	}
	return cfg, err
}

// loadOrFailClosed reads the config; when it is missing (named with
// --config) or invalid it logs one error with the fix and returns the
// fail-closed config instead, so that the default deny is installed all
// the same. err tells the caller the file was not used.
func loadOrFailClosed(opt options, log logrus.FieldLogger) (config.Config, error) {
	cfg, err := loadConfig(opt)
	if err != nil {
		log.WithField("config", opt.configPath).Errorf("%v; %s", err, config.Fix)
		return config.FailClosed(), err
	}
	logListErrors(cfg, log)
	return cfg, nil
}

// watchChanges starts what asks for a pass: Docker's events, the host's
// links, firewalld's signals and the kernel's changes to the rules.
func watchChanges(ctx context.Context, w *dockerwatch.Watcher, rec *reconciler.Reconciler, log logrus.FieldLogger, poke func()) {
	changed := func(reason string) {
		log.WithField("reason", reason).Debug("change")
		poke()
	}
	go w.Watch(ctx, changed)
	go func() {
		if err := dockerwatch.WatchLinks(ctx, changed); err != nil {
			log.WithError(err).Warn("not following the host's interfaces: a new one is known at the next resync")
		}
	}()
	go watchFirewalld(ctx, rec, netfilter.Firewalld(rec.Backend()), log, poke)
	go func() {
		if err := rec.WatchDrift(ctx, 500*time.Millisecond, changed); err != nil {
			log.WithError(err).Warn("fast drift detection off; the periodic resync still repairs drift")
		}
	}()
}

func runDaemon(ctx context.Context, opt options, log *logrus.Logger) error {
	cfg, cfgErr := loadOrFailClosed(opt, log)
	rec, w, err := host.Open(ctx, opt.host(), log, cfg)
	if err != nil {
		return err
	}
	log.WithFields(logrus.Fields{"version": versionString(), "config": opt.configPath}).Info("dockmoat starting")

	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default: // a pass is already pending; it will see this change too
		}
	}
	m := metrics.New()
	defer startConntrack(ctx, opt, rec, m, log)()
	m.ConfigState(cfgErr)
	w.OnState = m.DockerState
	defer serveMetrics(ctx, opt, m, log)()
	watchChanges(ctx, w, rec, log, poke)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, opt, rec, m, log, poke)
	if release, err := config.HoldDaemonLock(opt.stateDir); err != nil {
		log.WithError(err).Warn("cannot mark this daemon as running in the state directory: 'dockmoat enable' will say no daemon runs")
	} else {
		defer release()
	}
	applyDisabled(opt.stateDir, rec, m, log)
	recordObserveFlag(opt, log)
	applyMode(opt.stateDir, rec, log)
	go followDisabled(ctx, opt.stateDir, rec, m, log, poke)
	followUFWInput(ctx, rec, log, poke)
	go auditLoop(ctx, opt, log, rec, m, opt.auditEvery)

	record, published, coexist, mode := statusWriter(opt.stateDir, log), publishedWriter(opt.stateDir, log), coexistenceWarner(log), modeLogger(log)
	observe := func(res netfilter.SyncResult, err error, took time.Duration) {
		mode(res.Observe)
		m.ObserveSync(res, err, took)
		record(res, err, took)
		published(res, err, took)
		coexist(res, err, took)
	}
	onSync := readyAfterFirstPass(observe, notify, func(err error) { log.WithError(err).Warn("could not tell systemd the host is protected") })
	ro := reconciler.RunOptions{Resync: opt.resync, OnSync: onSync}
	if every := watchdogEvery(os.Getenv); every > 0 {
		ro.AliveEvery, ro.Alive = every, func() {
			if err := notify("WATCHDOG=1"); err != nil {
				log.WithError(err).Warn("could not ping systemd's watchdog")
			}
		}
	}
	err = rec.Run(ctx, kick, ro)
	log.Info("dockmoat stopping; rules stay in place (fail-closed)")
	return err
}

// startConntrack opens the conntrack socket that revocation and observe
// mode use (without it, neither runs); stop waits for the last pass's
// revocations, then closes it.
func startConntrack(ctx context.Context, opt options, rec *reconciler.Reconciler, m *metrics.Metrics, log logrus.FieldLogger) (stop func()) {
	ct, err := reconciler.NewNetlinkConntrack()
	if err != nil {
		log.WithError(err).Warn("conntrack unavailable: sessions whose access is withdrawn are not cut (new ones are refused), and observe mode counts nothing")
		return func() {}
	}
	rec.SetConntrack(ct)
	go observeLoop(ctx, opt.stateDir, rec, ct, m, log)
	return func() {
		rec.WaitRevocations() // the last pass's sessions are cut before the socket goes
		ct.Close()
	}
}

// metricsRetry is how often a --metrics-addr that could not be bound is
// tried again.
var metricsRetry = 2 * time.Second

// serveMetrics serves /metrics and /healthz on --metrics-addr (if set)
// until ctx ends; stop closes the server. The endpoint is optional and
// enforcement never waits on it: an address in use (Docker's own metrics
// on 9323, say) is logged and tried again every metricsRetry, a
// malformed one logged once.
func serveMetrics(ctx context.Context, opt options, m *metrics.Metrics, log logrus.FieldLogger) (stop func()) {
	addr := opt.metricsAddr
	if addr == "" {
		return func() {}
	}
	e := log.WithField("addr", addr)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		e.WithError(err).Error("--metrics-addr is not HOST:PORT: no /metrics or /healthz; the firewall is enforced all the same")
		return func() {}
	}
	srv := &http.Server{Handler: m.Handler(opt.healthGrace), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		for wait, tries := time.Duration(0), 0; ; wait, tries = metricsRetry, tries+1 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				if tries == 0 {
					e.WithError(err).Errorf("cannot serve /metrics and /healthz; the firewall is enforced all the same; trying again every %s", metricsRetry)
				}
				continue
			}
			e.Info("serving /metrics and /healthz")
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				e.WithError(err).Error("metrics server stopped")
			}
			return
		}
	}()
	return func() { srv.Close() }
}

// reloadOnHUP re-reads the config file on every SIGHUP. A file that does
// not load leaves the last valid config in force (a fail-closed one if
// there never was one): a typo must not reopen or close what the user had.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, opt options, rec *reconciler.Reconciler, m *metrics.Metrics, log *logrus.Logger, poke func()) {
	lists := time.NewTicker(listPoll)
	defer lists.Stop()
	seen := listStamps(rec.Config().ListFiles)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload(opt, rec, m, log, poke, "SIGHUP")
		case <-lists.C:
			if now := listStamps(rec.Config().ListFiles); !maps.Equal(now, seen) {
				seen = now
				reload(opt, rec, m, log, poke, "a source list changed")
			}
		}
	}
}

// reload reads the config file again (and its lists) and hands it to the
// next pass; an invalid file leaves the previous config in force.
func reload(opt options, rec *reconciler.Reconciler, m *metrics.Metrics, log logrus.FieldLogger, poke func(), why string) {
	c, err := loadConfig(opt)
	m.ConfigState(err)
	if err != nil {
		log.WithField("config", opt.configPath).Errorf("%s: %v; the previous config stays in force until the file is fixed and reloaded", why, err)
		return
	}
	logListErrors(c, log)
	rec.SetConfig(c)
	log.WithField("config", opt.configPath).Info(why + ": config reloaded")
	poke()
}

// listPoll is how often the source lists' files are looked at.
var listPoll = 5 * time.Second

// listStamps is each list file's size and modification time ("" when it
// cannot be read): a change means reading the config again.
func listStamps(files map[string]string) map[string]string {
	out := make(map[string]string, len(files))
	for name, path := range files {
		if fi, err := os.Stat(path); err == nil {
			out[name] = fmt.Sprintf("%d %d", fi.Size(), fi.ModTime().UnixNano())
		} else {
			out[name] = ""
		}
	}
	return out
}

// logListErrors says which source lists could not be read (they open
// nothing).
func logListErrors(c config.Config, log logrus.FieldLogger) {
	for _, e := range c.ListErrors {
		log.Warn(e)
	}
}

func runPlan(ctx context.Context, opt options, log *logrus.Logger, out io.Writer) (bool, error) {
	var doc planDoc
	text := opt.format != "json"
	// With a bad file, plan shows what `run` installs: the fail-closed config.
	cfg, cfgErr := loadOrFailClosed(opt, log)
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
	if off, disabled := disabledState(opt.stateDir, log); disabled {
		rec.SetDisabled(true)
		doc.Disabled = &disabledJSON{Since: off.Since.Format(time.RFC3339), Reason: off.Reason}
		if text {
			fmt.Fprintf(out, "PROTECTION DISABLED since %s (%s): every published port follows Docker's own rules;\nthe rules below stay installed behind one bypass rule per hook. 'dockmoat enable' turns them back on.\n\n",
				off.Since.Format(time.RFC3339), orNone(off.Reason))
		}
	}
	applyMode(opt.stateDir, rec, log)
	readUFWInput(ctx, rec, log)
	if doc.Observe = rec.Config().Observe; doc.Observe && text {
		fmt.Fprint(out, "OBSERVE MODE: new connections that the policy below refuses are let through, counted and logged, not dropped;\n'dockmoat suggest' lists them, 'dockmoat enforce' drops them.\n\n")
	}
	if doc.Banned = banned(ctx, rec.Backend()); text && len(doc.Banned) > 0 {
		writeBanned(out, doc.Banned)
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
	cfg, _ := loadOrFailClosed(opt, log)
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
	published, perr := lastPublished(opt.stateDir)
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
