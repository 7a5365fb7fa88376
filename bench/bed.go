package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// bedFigures measures, in a real test bed per engine: the time from a
// container's start to its allowed port answering from outside, with and
// without dockmoat, and the daemon's idle footprint.
func bedFigures(b *strings.Builder) error {
	engines, _ := testbed.Engines()
	dir, err := os.MkdirTemp("", "dockmoat-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := testbed.BuildDockmoat(dir)
	if err != nil {
		return err
	}
	b.WriteString("## Allow latency: container start → allowed port answers from outside\n\n")
	b.WriteString("From `ContainerStart` returning to the sending of the first TCP connect from the outside namespace that succeeds (attempts every 2 ms, in parallel), " +
		"20 containers one after another; *no firewall* is the same engine without dockmoat. *docker run*: each container started right after " +
		"its creation, as `docker run` does; *created first*: created, then started once dockmoat has read it, as Compose does (it creates " +
		"the project's containers, then starts them). dockmoat installs a container's allow when Docker connects it to its network, before " +
		"its process runs, if it read the container's labels and bindings at its creation; a `docker run` start often takes the container's " +
		"lock before that read, and its allow then comes after the start. *Burst*: 20 labeled containers started together, time from the " +
		"last start returning until all 20 answer, without and with dockmoat. In brackets: of the 20 first SYNs, sent as each start returned, " +
		"how many the firewall let through (answered, or refused by a container whose process was not listening yet, rather than dropped): " +
		"20/20 means the allow was in place before the start returned, and what remains of the added time is the process starting " +
		"while dockmoat's own pass after the start (an inspect, a listing) shares the CPU.\n\n")
	b.WriteString("| engine | no firewall p50 / p99 | docker run: dockmoat p50 / p99 | added p50 / p99 | created first: dockmoat p50 / p99 | added p50 / p99 | burst of 20: no firewall / dockmoat |\n|---|---|---|---|---|---|---|\n")
	var foot []string
	defer testbed.RemoveBuilt()
	for _, eng := range engines {
		if eng.Legacy {
			continue
		}
		bed, err := testbed.Start(context.Background(), eng, func(string, ...any) {})
		if err != nil {
			return err
		}
		row, fp, err := bedRun(bed, bin)
		bed.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", eng.Name, err)
		}
		fmt.Fprintf(b, "| %s | %s |\n", eng.Name, row)
		foot = append(foot, fmt.Sprintf("| %s | %s |", eng.Name, fp))
		fmt.Fprintf(os.Stderr, "%s done\n", eng.Name)
	}
	st, _ := os.Stat(bin)
	b.WriteString("\n## Footprint\n\n")
	fmt.Fprintf(b, "Binary: %.1f MB (`go build`, not stripped). The sidecar image (debootstrap bookworm minbase + iptables + nftables) is built and measured by `TestSidecarImage` in `make test`, which logs its size (`image …: N MB`); this run does not build it.\n\n", float64(st.Size())/1e6)
	b.WriteString("Idle `dockmoat run` after the latency series above, with their containers still running (counted below): resident memory and CPU over 10 s with nothing changing (a 30 s resync may fall in the window).\n\n")
	b.WriteString("| engine | containers | RSS | CPU while idle |\n|---|---|---|---|\n")
	b.WriteString(strings.Join(foot, "\n") + "\n")
	return nil
}

// labelled is the i-th container of a latency series: one published
// port, opened by its label.
func labelled(name string, port int) testbed.Spec {
	return testbed.Spec{Name: name, Publish: []string{fmt.Sprintf("%d:80", port)}, Serve: []string{"80"},
		Labels: map[string]string{"dockmoat.allow": strconv.Itoa(port)}}
}

// startOne starts a labelled container and returns when its start
// returned. created: as Compose does, the container is created first and
// started once dockmoat has read it (its log says so; with no dm, at
// once); otherwise as `docker run` does, started right after its creation.
func startOne(ctx context.Context, bed *testbed.Bed, dm *testbed.Dockmoat, s testbed.Spec, created bool) (time.Time, error) {
	id, err := bed.CreateContainer(ctx, s)
	if err != nil {
		return time.Time{}, err
	}
	if created && dm != nil {
		if err := untilLogged(ctx, dm, s.Name, "read at its creation"); err != nil {
			return time.Time{}, err
		}
	}
	if _, err := bed.Docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return time.Time{}, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	return time.Now(), nil
}

// untilLogged waits until the daemon logged msg for container name.
func untilLogged(ctx context.Context, dm *testbed.Dockmoat, name, msg string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		for line := range strings.Lines(dm.Logs()) {
			if strings.Contains(line, msg) && slices.Contains(strings.Fields(line), "container="+name) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dockmoat did not log %q for %s", msg, name)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// latencySeries measures 20 labelled containers one after another: from each
// start returning to its port answering from outside, and how many of
// the first SYNs, sent as the start returned, the firewall let through
// (answered, or refused by the container whose process was not listening
// yet, rather than dropped): the part of the latency that is dockmoat's.
func latencySeries(ctx context.Context, bed *testbed.Bed, dm *testbed.Dockmoat, prefix string, port0 int, created bool) ([]time.Duration, int, error) {
	const samples = 20
	var out []time.Duration
	through := 0
	for i := 0; i < samples; i++ {
		port := port0 + i
		start, err := startOne(ctx, bed, dm, labelled(fmt.Sprintf("%s%d", prefix, i), port), created)
		if err != nil {
			return nil, 0, err
		}
		first := make(chan bool, 1)
		go func() { first <- letThrough(ctx, bed, port) }()
		d, err := untilOpen(ctx, bed, port, start)
		if err != nil {
			return nil, 0, err
		}
		if <-first {
			through++
		}
		out = append(out, d)
	}
	return out, through, nil
}

// letThrough sends one SYN to the port from outside and says whether it
// got through the firewall: an answer, or the container's refusal.
func letThrough(ctx context.Context, bed *testbed.Bed, port int) bool {
	p := testbed.Probe{Proto: "tcp", Src: testbed.OutsideA, Dst: netip.AddrPortFrom(testbed.HostIP, uint16(port))}
	_, err := testbed.Try(ctx, bed.OutNSPath(), p, 150*time.Millisecond)
	return err == nil || errors.Is(err, syscall.ECONNREFUSED)
}

// burst starts 20 labelled containers together (docker run style) and
// returns how long after the last start returned all 20 answered.
func burst(ctx context.Context, bed *testbed.Bed, prefix string, port0 int) (time.Duration, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Time
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			at, err := startOne(ctx, bed, nil, labelled(fmt.Sprintf("%s%d", prefix, i), port0+i), false)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			if at.After(last) {
				last = at
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return 0, err
	}
	var slowest time.Duration
	for i := 0; i < 20; i++ {
		d, err := untilOpen(ctx, bed, port0+i, last)
		if err != nil {
			return 0, err
		}
		slowest = max(slowest, d)
	}
	return slowest, nil
}

// q is the q-quantile of ds.
func q(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func bedRun(bed *testbed.Bed, bin string) (string, string, error) {
	ctx := context.Background()
	if err := bed.BuildImage(ctx); err != nil {
		return "", "", err
	}
	base, baseThrough, err := latencySeries(ctx, bed, nil, "nofw", 9000, false)
	if err != nil {
		return "", "", err
	}
	baseBurst, err := burst(ctx, bed, "nofwburst", 9300)
	if err != nil {
		return "", "", err
	}
	dm, err := bed.StartDockmoat(bin, "{}\n")
	if err != nil {
		return "", "", err
	}
	defer dm.Stop(syscall.SIGTERM)
	if err := dm.WaitInSync(ctx, 30*time.Second); err != nil {
		return "", "", err
	}
	run, runThrough, err := latencySeries(ctx, bed, dm, "dm", 9100, false)
	if err != nil {
		return "", "", err
	}
	created, createdThrough, err := latencySeries(ctx, bed, dm, "dmc", 9400, true)
	if err != nil {
		return "", "", err
	}
	slowest, err := burst(ctx, bed, "burst", 9200)
	if err != nil {
		return "", "", err
	}
	added := func(ds []time.Duration) [2]time.Duration {
		return [2]time.Duration{q(ds, .5) - q(base, .5), q(ds, .99) - q(base, .99)}
	}
	latency[bed.Engine.Name] = latencies{run: added(run), created: added(created), burst: slowest, baseBurst: baseBurst,
		runThrough: runThrough, createdThrough: createdThrough}
	pair := func(ds []time.Duration) string { return ms(q(ds, .5)) + " / " + ms(q(ds, .99)) }
	addedText := func(ds []time.Duration) string { a := added(ds); return signed(a[0]) + " / " + signed(a[1]) }
	row := fmt.Sprintf("%s (%d/20) | %s | %s (%d/20) | %s | %s (%d/20) | %s / %s", pair(base), baseThrough, pair(run), addedText(run), runThrough,
		pair(created), addedText(created), createdThrough, ms(baseBurst), ms(slowest))

	// Footprint: idle for 10 s after the last pass.
	time.Sleep(3 * time.Second)
	pid, err := daemonPid(bed)
	if err != nil {
		return row, "not measured: " + err.Error(), nil
	}
	t0 := cpuTicks(pid)
	time.Sleep(10 * time.Second)
	t1 := cpuTicks(pid)
	rss := rssOf(pid)
	footprints = append(footprints, footprint{engine: bed.Engine.Name, rss: rss, ticks: t1 - t0})
	list, err := bed.Docker.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return row, "", fmt.Errorf("counting containers: %w", err)
	}
	fp := fmt.Sprintf("%d | %s | %.2f%% of one core (%d ticks in 10 s)", len(list.Items), rss, float64(t1-t0)/10.0, t1-t0)
	return row, fp, nil
}

// untilOpen probes the port from outside until it answers and returns
// when the first successful attempt was sent. A dropped SYN costs an
// attempt its whole timeout, so attempts are launched every 2 ms in
// parallel (bounded) rather than one after another: the figure is then
// precise to a few milliseconds instead of to one timeout.
func untilOpen(ctx context.Context, bed *testbed.Bed, port int, start time.Time) (time.Duration, error) {
	p := testbed.Probe{Proto: "tcp", Src: testbed.OutsideA, Dst: netip.AddrPortFrom(testbed.HostIP, uint16(port))}
	found := make(chan time.Duration, 1)
	sem := make(chan struct{}, 64)
	stop := make(chan struct{})
	defer close(stop)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case d := <-found:
			return d, nil
		case <-deadline:
			return 0, fmt.Errorf("port %d never answered", port)
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // 64 attempts in flight already
		}
		sent := time.Since(start)
		go func() {
			defer func() { <-sem }()
			if _, err := testbed.Try(ctx, bed.OutNSPath(), p, 150*time.Millisecond); err == nil {
				select {
				case found <- sent:
				default:
				}
			}
		}()
	}
}

// daemonPid finds the dockmoat run process of the bed.
func daemonPid(bed *testbed.Bed) (int, error) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmd), "dockmoat\x00run") && strings.Contains(string(cmd), bed.Dir) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("dockmoat process not found")
}

func cpuTicks(pid int) int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// footprint is one idle measurement, kept for the goals table.
type footprint struct {
	engine string
	rss    string
	ticks  int
}

var footprints []footprint

func rssOf(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return fmt.Sprintf("%.1f MB", float64(kb)/1024)
		}
	}
	return "?"
}
