package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/daemon"
	"github.com/dockmoat/dockmoat/host"
)

// runAudit reads Docker and the live ruleset, changes nothing, and prints
// the report. It returns true when a port is reachable beyond its policy.
func runAudit(ctx context.Context, opt options, log *logrus.Logger, out io.Writer) (bool, error) {
	if opt.format != "table" && opt.format != "json" {
		return false, fmt.Errorf("--format: %q is not table or json", opt.format)
	}
	cfg, err := daemon.LoadConfig(opt.daemon())
	if err != nil {
		return false, err
	}
	// Audit's own messages would clutter the report; keep warnings only.
	if log.GetLevel() == logrus.InfoLevel {
		log.SetLevel(logrus.WarnLevel)
	}
	rep, err := host.Audit(ctx, opt.host(), log, cfg, explainTarget(opt))
	if err != nil {
		return false, err
	}
	return printReport(out, opt, rep)
}

func explainTarget(opt options) *report.Target {
	if opt.explain == "" {
		return nil
	}
	t, _ := report.ParseTarget(opt.explain) // validated with the flags
	return &t
}

// printReport prints the report, or with --explain the named ports' paths; it
// returns whether a port shown is reachable beyond its policy.
func printReport(out io.Writer, opt options, rep report.Report) (bool, error) {
	t := explainTarget(opt)
	if opt.quiet && !rep.Beyond() {
		return false, nil
	}
	if t == nil {
		return rep.Beyond(), writeReport(out, opt.format, rep)
	}
	var rows []report.Row
	for _, r := range rep.Rows {
		if t.Names(r) {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return false, fmt.Errorf("--explain %s: no published port matches", opt.explain)
	}
	rep.Rows = rows
	if opt.format == "json" {
		return rep.Beyond(), writeReport(out, "json", rep)
	}
	if err := report.WriteExplain(out, rows); err != nil {
		return false, fmt.Errorf("writing report: %w", err)
	}
	return rep.Beyond(), nil
}

func writeReport(out io.Writer, format string, rep report.Report) error {
	var err error
	if format == "json" {
		err = report.WriteJSON(out, rep)
	} else {
		err = report.WriteTable(out, rep)
	}
	if err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	return nil
}
