// Package daemon is `dockmoat run`: the reconciler wired to what asks for
// a pass (Docker's events, the host's links, firewalld, the kernel's
// changes, SIGHUP, the source lists, the state directory's switches), to
// systemd (readiness, watchdog), to the metrics endpoint and to the state
// directory, where it records each pass for `dockmoat status`, the
// published ports for `dockmoat guard` and what observe mode saw for
// `dockmoat suggest`. The host is opened by package host; the commands
// that read those records are the CLI's.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
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

// Options are the command-line choices of `dockmoat run`.
type Options struct {
	Host        host.Options
	ConfigPath  string
	ConfigSet   bool // --config was given: a missing file is an error
	Observe     bool // --observe
	StateDir    string
	Resync      time.Duration
	MetricsAddr string
	HealthGrace time.Duration
	AuditEvery  time.Duration
	Version     string
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

// Run runs the daemon until ctx ends; the rules stay in place after it.
func Run(ctx context.Context, opt Options, log *logrus.Logger) error {
	cfg, cfgErr := LoadOrFailClosed(opt, log)
	rec, w, err := host.Open(ctx, opt.Host, log, cfg)
	if err != nil {
		return err
	}
	log.WithFields(logrus.Fields{"version": opt.Version, "config": opt.ConfigPath}).Info("dockmoat starting")

	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default: // a pass is already pending; it will see this change too
		}
	}
	m := metrics.New()
	m.CountLimits(func(ctx context.Context) ([]netfilter.LimitRefusal, error) {
		return netfilter.LimitRefusals(ctx, rec.Backend())
	})
	defer startConntrack(ctx, opt, rec, m, log)()
	m.ConfigState(cfgErr)
	w.OnState = m.DockerState
	defer serveMetrics(ctx, opt, m, log)()
	watchChanges(ctx, w, rec, log, poke)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, opt, rec, m, log, poke)
	if release, err := config.HoldDaemonLock(opt.StateDir); err != nil {
		log.WithError(err).Warn("cannot mark this daemon as running in the state directory: 'dockmoat enable' will say no daemon runs")
	} else {
		defer release()
	}
	follow(ctx, opt, rec, m, log, poke)

	record, published, coexist, mode := StatusWriter(opt.StateDir, opt.Version, log), publishedWriter(opt.StateDir, log), coexistenceWarner(log), modeLogger(log)
	observe := func(res netfilter.SyncResult, err error, took time.Duration) {
		mode(res.Observe)
		m.ObserveSync(res, err, took)
		record(res, err, took)
		published(res, err, took)
		coexist(res, err, took)
	}
	onSync := readyAfterFirstPass(observe, notify, func(err error) { log.WithError(err).Warn("could not tell systemd the host is protected") })
	ro := reconciler.RunOptions{Resync: opt.Resync, OnSync: onSync}
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

// follow applies the state directory's switches before the first pass,
// then starts what follows them, ufw's plain rules, the URL lists and
// the scheduled audit.
func follow(ctx context.Context, opt Options, rec *reconciler.Reconciler, m *metrics.Metrics, log *logrus.Logger, poke func()) {
	applyDisabled(opt.StateDir, rec, m, log)
	recordObserveFlag(opt, log)
	ApplyMode(opt.StateDir, rec, log)
	go followDisabled(ctx, opt.StateDir, rec, m, log, poke)
	followUFWInput(ctx, rec, log, poke)
	go followURLLists(ctx, opt.StateDir, rec, m, log)
	go auditLoop(ctx, opt, log, rec, m, opt.AuditEvery)
}

// startConntrack opens the conntrack socket that revocation and observe
// mode use (without it, neither runs); stop waits for the last pass's
// revocations, then closes it.
func startConntrack(ctx context.Context, opt Options, rec *reconciler.Reconciler, m *metrics.Metrics, log logrus.FieldLogger) (stop func()) {
	ct, err := reconciler.NewNetlinkConntrack()
	if err != nil {
		log.WithError(err).Warn("conntrack unavailable: sessions whose access is withdrawn are not cut (new ones are refused), and observe mode counts nothing")
		return func() {}
	}
	rec.SetConntrack(ct)
	go observeLoop(ctx, opt.StateDir, rec, ct, m, log)
	return func() {
		rec.WaitRevocations() // the last pass's sessions are cut before the socket goes
		ct.Close()
	}
}

// serveMetrics serves /metrics and /healthz on --metrics-addr (if set)
// until ctx ends; stop closes the server. The endpoint is optional and
// enforcement never waits on it: an address in use (Docker's own metrics
// on 9323, say) is logged and tried again every metricsRetry, a
// malformed one logged once.
func serveMetrics(ctx context.Context, opt Options, m *metrics.Metrics, log logrus.FieldLogger) (stop func()) {
	addr := opt.MetricsAddr
	if addr == "" {
		return func() {}
	}
	e := log.WithField("addr", addr)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		e.WithError(err).Error("--metrics-addr is not HOST:PORT: no /metrics or /healthz; the firewall is enforced all the same")
		return func() {}
	}
	srv := &http.Server{Handler: m.Handler(opt.HealthGrace), ReadHeaderTimeout: 5 * time.Second}
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
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, opt Options, rec *reconciler.Reconciler, m *metrics.Metrics, log *logrus.Logger, poke func()) {
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
func reload(opt Options, rec *reconciler.Reconciler, m *metrics.Metrics, log logrus.FieldLogger, poke func(), why string) {
	c, err := LoadConfig(opt)
	m.ConfigState(err)
	if err != nil {
		log.WithField("config", opt.ConfigPath).Errorf("%s: %v; the previous config stays in force until the file is fixed and reloaded", why, err)
		return
	}
	logListErrors(c, log)
	rec.SetConfig(c)
	log.WithField("config", opt.ConfigPath).Info(why + ": config reloaded")
	poke()
}

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
	for _, e := range slices.Concat(c.ListErrors, c.ListNotes) {
		log.Warn(e)
	}
}

// LoadConfig reads the config file, with --observe applied.
func LoadConfig(opt Options) (config.Config, error) {
	cfg, err := config.LoadIn(opt.ConfigPath, opt.ConfigSet, opt.StateDir)
	if err == nil && opt.Observe {
		cfg.Observe = true // a file that cannot be read runs closed, flag or not
	}
	return cfg, err
}

// LoadOrFailClosed reads the config; when it is missing (named with
// --config) or invalid it logs one error with the fix and returns the
// fail-closed config instead, so that the default deny is installed all
// the same. err tells the caller the file was not used.
func LoadOrFailClosed(opt Options, log logrus.FieldLogger) (config.Config, error) {
	cfg, err := LoadConfig(opt)
	if err != nil {
		log.WithField("config", opt.ConfigPath).Errorf("%v; %s", err, config.Fix)
		return config.FailClosed(), err
	}
	logListErrors(cfg, log)
	return cfg, nil
}

// metricsRetry is how often a --metrics-addr that could not be bound is
// tried again.
var metricsRetry = 2 * time.Second

// listPoll is how often the source lists' files are looked at.
var listPoll = 5 * time.Second
