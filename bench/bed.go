package main

import (
	"context"
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
		"20 containers one after another; *no firewall* is the same engine without dockmoat. *Burst*: 20 labeled containers started " +
		"together, time from the last start returning until all 20 answer.\n\n")
	b.WriteString("| engine | no firewall p50 / p99 | dockmoat p50 / p99 | added p50 / p99 | burst of 20: all reachable after |\n|---|---|---|---|---|\n")
	var foot []string
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
	b.WriteString("Idle `dockmoat run` with 20 published containers, after its first pass: resident memory and CPU over 10 s with nothing changing.\n\n")
	b.WriteString("| engine | RSS | CPU while idle |\n|---|---|---|\n")
	b.WriteString(strings.Join(foot, "\n") + "\n")
	return nil
}

func bedRun(bed *testbed.Bed, bin string) (string, string, error) {
	ctx := context.Background()
	if err := bed.BuildImage(ctx); err != nil {
		return "", "", err
	}
	const samples = 20
	measureLatency := func(prefix string, port0 int) ([]time.Duration, error) {
		var out []time.Duration
		for i := 0; i < samples; i++ {
			port := port0 + i
			_, err := bed.RunContainer(ctx, testbed.Spec{Name: fmt.Sprintf("%s%d", prefix, i), Publish: []string{fmt.Sprintf("%d:80", port)},
				Serve: []string{"80"}, Labels: map[string]string{"dockmoat.allow": strconv.Itoa(port)}})
			if err != nil {
				return nil, err
			}
			start := time.Now()
			d, err := untilOpen(ctx, bed, port, start)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	}
	base, err := measureLatency("nofw", 9000)
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
	with, err := measureLatency("dm", 9100)
	if err != nil {
		return "", "", err
	}
	// Burst of 20.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Time
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			port := 9200 + i
			if _, err := bed.RunContainer(ctx, testbed.Spec{Name: fmt.Sprintf("burst%d", i), Publish: []string{fmt.Sprintf("%d:80", port)},
				Serve: []string{"80"}, Labels: map[string]string{"dockmoat.allow": strconv.Itoa(port)}}); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			last = time.Now()
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return "", "", err
	}
	var slowest time.Duration
	for i := 0; i < 20; i++ {
		d, err := untilOpen(ctx, bed, 9200+i, last)
		if err != nil {
			return "", "", err
		}
		slowest = max(slowest, d)
	}
	p := func(ds []time.Duration, q float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	latency[bed.Engine.Name] = [4]time.Duration{p(with, .5) - p(base, .5), p(with, .99) - p(base, .99), slowest}
	row := fmt.Sprintf("%s / %s | %s / %s | %s / %s | %s",
		ms(p(base, .5)), ms(p(base, .99)), ms(p(with, .5)), ms(p(with, .99)),
		ms(p(with, .5)-p(base, .5)), ms(p(with, .99)-p(base, .99)), ms(slowest))

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
	fp := fmt.Sprintf("%s | %.2f%% of one core (%d ticks in 10 s)", rss, float64(t1-t0)/10.0, t1-t0)
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
