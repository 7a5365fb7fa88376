package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/dockerwatch"
)

// swarmAuditTimeout bounds how long the nodes' audits may take together.
const swarmAuditTimeout = 2 * time.Minute

// runAuditSwarm audits every node of the swarm from a manager: a global
// job runs `dockmoat audit --format json` on each node with the dockmoat
// service's image, mounts, config and capabilities, and the reports are
// printed as one, with a node column. It returns true when a port on any
// node is reachable beyond its policy (exit 1, as for one host); a node
// that could not be audited is an error (exit 2) otherwise. The nodes'
// audits exit 0 (--exit-zero): the verdict is read from their reports,
// and a job task that "failed" could be run again.
func runAuditSwarm(ctx context.Context, opt options, out io.Writer) (bool, error) {
	cli, err := dockerwatch.NewClient()
	if err != nil {
		return false, err
	}
	defer cli.Close()
	job := fmt.Sprintf("dockmoat-audit-%d", time.Now().Unix())
	outs, err := dockerwatch.RunOnEveryNode(ctx, cli, opt.swarmService, job, []string{"audit", "--format", "json", "--exit-zero"}, swarmAuditTimeout, swarmProgress(os.Stderr))
	if err != nil {
		return false, fmt.Errorf("audit --swarm (run it on a manager): %w", err)
	}
	rep := clusterReport(outs)
	if opt.quiet && !rep.Beyond() && !rep.Incomplete() {
		return false, nil
	}
	if opt.format == "json" {
		err = report.WriteClusterJSON(out, rep)
	} else {
		err = report.WriteClusterTable(out, rep)
	}
	if err != nil {
		return false, fmt.Errorf("writing report: %w", err)
	}
	if rep.Beyond() {
		return true, nil
	}
	if rep.Incomplete() {
		return false, fmt.Errorf("audit --swarm: some nodes were not audited (see NOT AUDITED above)")
	}
	return false, nil
}

func clusterReport(outs []dockerwatch.NodeOutput) report.ClusterReport {
	var rep report.ClusterReport
	for _, o := range outs {
		if o.Err != "" {
			rep.Nodes = append(rep.Nodes, report.NodeReport{Node: o.Node, Err: o.Err})
			continue
		}
		rep.Nodes = append(rep.Nodes, report.ParseNodeReport(o.Node, o.Stdout))
	}
	return rep
}

// swarmProgress reports the job's progress on stderr when it is a
// terminal ("audited 2 of 3 nodes"), rewriting one line; nothing when
// stderr goes to a file or a pipe (cron, CI).
func swarmProgress(stderr *os.File) func(done, total int) {
	if fi, err := stderr.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return func(done, total int) {
		fmt.Fprintf(stderr, "\rdockmoat audit --swarm: audited %d of %d nodes", done, total)
		if done == total {
			fmt.Fprintln(stderr)
		}
	}
}
