// Command demo is `make demo`: it brings up a test bed (a "host" network
// namespace with its own dockerd, an "outside" namespace as the internet),
// runs dockmoat there, shows a published port closed and then opened by a
// label, and tears everything down. The machine's own firewall is not
// touched.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

func main() {
	if err := demo(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...) }

func demo() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the demo creates network namespaces and starts its own dockerd")
	}
	ctx := context.Background()
	engines, _ := testbed.Engines()
	if len(engines) == 0 {
		return fmt.Errorf("no Docker engine found: `make deps` installs Debian's docker.io")
	}
	dir, err := os.MkdirTemp("", "dockmoat-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := testbed.BuildDockmoat(dir)
	if err != nil {
		return err
	}
	say("starting a test bed with %s (namespaces only; your firewall is untouched)", engines[0].Name)
	bed, err := testbed.Start(ctx, engines[0], func(f string, a ...any) { fmt.Printf("    "+f+"\n", a...) })
	if err != nil {
		return err
	}
	defer func() {
		say("tearing down")
		bed.Close()
		testbed.RemoveBuilt()
	}()
	if err := bed.BuildImage(ctx); err != nil {
		return err
	}
	probe := func(port int) {
		p := testbed.Probe{Proto: "tcp", Src: testbed.OutsideA, Dst: netip.AddrPortFrom(testbed.HostIP, uint16(port))}
		answer, err := testbed.Try(ctx, bed.OutNSPath(), p, 1500*time.Millisecond)
		if err != nil {
			fmt.Printf("    outside %s -> host %s:%d   BLOCKED (%v)\n", testbed.OutsideA, testbed.HostIP, port, err)
			return
		}
		fmt.Printf("    outside %s -> host %s:%d   CONNECTED: %s\n", testbed.OutsideA, testbed.HostIP, port, answer)
	}

	say("docker run -p 5432:5432 db   (no label) — without dockmoat, Docker publishes it to the world")
	if _, err := bed.RunContainer(ctx, testbed.Spec{Name: "db", Publish: []string{"5432:5432"}, Serve: []string{"5432"}}); err != nil {
		return err
	}
	probe(5432)

	say("dockmoat run")
	dm, err := bed.StartDockmoat(bin, "{}\n")
	if err != nil {
		return err
	}
	defer func() { _ = dm.Stop(syscall.SIGTERM) }()
	if err := dm.WaitInSync(ctx, 20*time.Second); err != nil {
		return err
	}
	probe(5432)

	say("docker run -p 8080:80 -l dockmoat.allow=8080 web")
	if _, err := bed.RunContainer(ctx, testbed.Spec{Name: "web", Publish: []string{"8080:80"}, Serve: []string{"80"},
		Labels: map[string]string{"dockmoat.allow": "8080"}}); err != nil {
		return err
	}
	if err := dm.WaitInSync(ctx, 20*time.Second); err != nil {
		return err
	}
	probe(8080)
	probe(5432)

	say("dockmoat plan (what is installed, and why)")
	out, err := bed.Exec(ctx, bin, "plan", "--config", dm.Config)
	if err != nil {
		return fmt.Errorf("plan: %w: %s", err, out)
	}
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if !strings.Contains(l, "level=") {
			fmt.Println("    " + l)
		}
	}
	return nil
}
